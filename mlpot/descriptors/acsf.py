"""Atom-centred symmetry functions (n2p2 types 2, 3 and 9), element-resolved.

Radial functions are defined per neighbour element, angular ones per unordered
pair of neighbour elements; each central element has its own ordered list of
functions (its feature columns). The computation is vectorised over all pairs
and triplets: per pair, the distinct radial kernels; per triplet, the distinct
(η, r_s) radial factors times the distinct (λ, ζ) angular factors; then one
scatter into (atom, column) through a lookup table indexed by
(central element, neighbour element(s), kernel).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import torch
from torch import nn

from mlpot.descriptors.cutoff import canonical, cutoff_function
from mlpot.descriptors.geometry import edge_vectors, triplets
from mlpot.descriptors.pairsum import angular_monomials, angular_monomials_with_grad, monomial_table, pair_sum_jacobian


@dataclass(frozen=True)
class SymmetryFunction:
    """One symmetry function, n2p2 style (lengths in Å)."""

    type: int  # 2 radial, 3 narrow angular, 9 wide angular
    central: str
    neighbors: tuple  # (e_j,) or (e_j, e_k)
    eta: float
    rc: float
    rs: float = 0.0
    zeta: float = 1.0
    lam: float = 1.0
    cutoff: str = "cos"
    alpha: float = 0.0

    def __post_init__(self):
        if self.type not in (2, 3, 9):
            raise ValueError(f"symmetry function type {self.type} not supported (2, 3 or 9)")
        if len(self.neighbors) != (1 if self.type == 2 else 2):
            raise ValueError(f"type {self.type} needs {1 if self.type == 2 else 2} neighbour element(s)")
        if self.rc <= 0 or self.eta < 0:
            raise ValueError(f"bad symmetry function parameters: {self}")
        if self.type != 2 and self.lam not in (-1.0, 1.0):
            raise ValueError(f"lambda must be +1 or -1, got {self.lam}")
        object.__setattr__(self, "cutoff", canonical(self.cutoff))
        object.__setattr__(self, "neighbors", tuple(self.neighbors))

    @property
    def angular(self) -> bool:
        return self.type != 2

    def to_dict(self) -> dict:
        d = asdict(self)
        d["neighbors"] = list(self.neighbors)
        return d


def _unique(items):
    """Distinct items in first-seen order, and the index of each item."""
    table, index = {}, []
    for it in items:
        index.append(table.setdefault(it, len(table)))
    return list(table), index


class ACSF(nn.Module):
    """Symmetry-function descriptor: ``(positions, species, pairs) -> (n_atoms, n_features)``."""

    def __init__(self, elements, functions, moment_max_zeta: int = 8):
        super().__init__()
        self.elements = list(elements)
        el = {e: k for k, e in enumerate(self.elements)}
        funcs = [f if isinstance(f, SymmetryFunction) else SymmetryFunction(**f) for f in functions]
        # normalise the order of angular neighbour pairs (by element index)
        funcs = [
            SymmetryFunction(**{**f.to_dict(), "neighbors": tuple(sorted(f.neighbors, key=lambda e: el[e]))})
            if f.angular
            else f
            for f in funcs
        ]
        for f in funcs:
            for e in (f.central, *f.neighbors):
                if e not in el:
                    raise ValueError(f"symmetry function names element '{e}' not in {self.elements}")
        self.functions = funcs
        self.per_element = [[f for f in funcs if f.central == e] for e in self.elements]
        self.n_features_per_element = [len(fs) for fs in self.per_element]
        self.n_features = max(self.n_features_per_element) if funcs else 0
        self.cutoff = max((f.rc for f in funcs), default=0.0)
        F, n_el = self.n_features, len(self.elements)
        n_pairs_el = n_el * (n_el + 1) // 2
        pair_id = torch.full((n_el, n_el), -1, dtype=torch.long)
        for k, (a, b) in enumerate(itertools.combinations_with_replacement(range(n_el), 2)):
            pair_id[a, b] = pair_id[b, a] = k

        # cutoff sets: distinct (rc, kind, alpha)
        self.cut_sets, cut_index = _unique([(f.rc, f.cutoff, f.alpha) for f in funcs])
        cut_of = dict(zip(funcs, cut_index))
        rad = [f for f in funcs if not f.angular]
        ang = [f for f in funcs if f.angular]
        self.rad_kernels, rad_k = _unique([(f.eta, f.rs, cut_of[f]) for f in rad])
        self.ang_kernels, ang_k = _unique(
            [(f.type, f.eta, f.rs, f.zeta, f.lam, cut_of[f]) for f in ang]
        )
        rad_map = torch.full((n_el, n_el, len(self.rad_kernels)), F, dtype=torch.long)
        ang_map = torch.full((n_el, n_pairs_el, len(self.ang_kernels)), F, dtype=torch.long)
        rk, ak = dict(zip(rad, rad_k)), dict(zip(ang, ang_k))
        for c, fs in enumerate(self.per_element):
            for col, f in enumerate(fs):
                if f.angular:
                    p = pair_id[el[f.neighbors[0]], el[f.neighbors[1]]]
                    ang_map[c, p, ak[f]] = col
                else:
                    rad_map[c, el[f.neighbors[0]], rk[f]] = col
        self.register_buffer("pair_id", pair_id, persistent=False)
        self.register_buffer("rad_map", rad_map, persistent=False)
        self.register_buffer("ang_map", ang_map, persistent=False)
        self.register_buffer("cut_rc", torch.tensor([c[0] for c in self.cut_sets], dtype=torch.float64), persistent=False)
        self.register_buffer(
            "rad_eta", torch.tensor([k[0] for k in self.rad_kernels], dtype=torch.float64), persistent=False
        )
        self.register_buffer("rad_rs", torch.tensor([k[1] for k in self.rad_kernels], dtype=torch.float64), persistent=False)
        self.register_buffer("rad_cut", torch.tensor([k[2] for k in self.rad_kernels], dtype=torch.long), persistent=False)
        # angular kernels factorised: radial factor (eta, rs, cut) per pair, angular factor (lam, zeta),
        # and for narrow (type 3) functions a third factor on r_jk
        self.ang_radial, ang_u = _unique([(k[1], k[2], k[5]) for k in self.ang_kernels])
        self.ang_angle, ang_v = _unique([(k[4], k[3]) for k in self.ang_kernels])
        narrow = [(k[1], k[2], k[5]) if k[0] == 3 else None for k in self.ang_kernels]
        self.ang_third, ang_w = _unique([n for n in narrow if n is not None])
        w_iter = iter(ang_w)
        ang_w_full = [next(w_iter) if n is not None else len(self.ang_third) for n in narrow]  # last = ones
        self.register_buffer("ang_u", torch.tensor(ang_u, dtype=torch.long), persistent=False)
        self.register_buffer("ang_v", torch.tensor(ang_v, dtype=torch.long), persistent=False)
        self.register_buffer("ang_w", torch.tensor(ang_w_full, dtype=torch.long), persistent=False)
        self.register_buffer("u_eta", torch.tensor([u[0] for u in self.ang_radial], dtype=torch.float64), persistent=False)
        self.register_buffer("u_rs", torch.tensor([u[1] for u in self.ang_radial], dtype=torch.float64), persistent=False)
        self.register_buffer("u_cut", torch.tensor([u[2] for u in self.ang_radial], dtype=torch.long), persistent=False)
        self.register_buffer("v_lam", torch.tensor([v[0] for v in self.ang_angle], dtype=torch.float64), persistent=False)
        self.register_buffer("v_zeta", torch.tensor([v[1] for v in self.ang_angle], dtype=torch.float64), persistent=False)
        self.register_buffer(
            "v_pref", torch.tensor([2.0 ** (1.0 - v[1]) for v in self.ang_angle], dtype=torch.float64), persistent=False
        )
        self.register_buffer("w_eta", torch.tensor([w[0] for w in self.ang_third], dtype=torch.float64), persistent=False)
        self.register_buffer("w_rs", torch.tensor([w[1] for w in self.ang_third], dtype=torch.float64), persistent=False)
        self.register_buffer("w_cut", torch.tensor([w[2] for w in self.ang_third], dtype=torch.long), persistent=False)
        self.angular_cutoff = max((f.rc for f in ang), default=0.0)
        self._integer_zeta = all(float(v[1]).is_integer() for v in self.ang_angle)
        # plain ints (not read from a tensor at run time: torch.compile sees constants)
        self._zeta_ints = tuple(int(v[1]) for v in self.ang_angle) if self._integer_zeta else ()
        self._setup_blocks(n_el, n_pairs_el, rad_map, ang_map, moment_max_zeta)

    def _setup_blocks(self, n_el, n_pairs_el, rad_map, ang_map, moment_max_zeta):
        """Tables of the fast forward path (see ``from_edges``).

        Radial values are summed per (atom, neighbour element) as whole rows of kernels. Wide
        (type 9) angular kernels with an integer ζ <= ``moment_max_zeta`` use the expansion
        (1 + λ cos θ)^ζ = Σ_n C(ζ, n) λ^n cos^n θ and cos^n θ_jik = Σ_m w_m m(û_ij) m(û_ik) over the
        monomials m of degree n of the unit vector (w_m multinomial), so that
        Σ_{j<k} h_j h_k cos^n θ_jik follows from per-pair sums Q = Σ_j h_j m(û_ij): O(pairs), no
        triplets. The other angular kernels (type 3, non-integer or large ζ) go through triplets.
        """
        F = self.n_features
        K_r = len(self.rad_kernels)
        mom = [k for k, kern in enumerate(self.ang_kernels)
               if kern[0] == 9 and float(kern[3]).is_integer() and 0 <= kern[3] <= moment_max_zeta]
        tri = [k for k in range(len(self.ang_kernels)) if k not in mom]
        self.mom_radial, mom_u = _unique([self.ang_radial[int(self.ang_u[k])] for k in mom])
        n_deg = int(max((self.ang_kernels[k][3] for k in mom), default=-1)) + 1  # degrees 0..n_deg-1
        expo, deg = monomial_table(n_deg - 1)
        self._max_degree = max(n_deg - 1, 0)
        coef = torch.zeros(len(mom), max(n_deg, 1), dtype=torch.float64)  # kernel value = Σ_n coef S_n
        for row, k in enumerate(mom):
            _, _, _, zeta, lam, _ = self.ang_kernels[k]
            for n in range(int(zeta) + 1):
                coef[row, n] = 2.0 ** (1.0 - zeta) * math.comb(int(zeta), n) * lam**n
        ea, eb = zip(*itertools.combinations_with_replacement(range(n_el), 2)) if n_el else ((), ())
        self.register_buffer("mom_expo", expo, persistent=False)
        self.register_buffer("mom_deg", deg, persistent=False)
        self.register_buffer("mom_coef", coef, persistent=False)
        self.register_buffer("mom_ku", torch.tensor(mom_u, dtype=torch.long), persistent=False)
        self.register_buffer("mom_eta", torch.tensor([u[0] for u in self.mom_radial], dtype=torch.float64), persistent=False)
        self.register_buffer("mom_rs", torch.tensor([u[1] for u in self.mom_radial], dtype=torch.float64), persistent=False)
        self.register_buffer("mom_cut", torch.tensor([u[2] for u in self.mom_radial], dtype=torch.long), persistent=False)
        self.register_buffer("pair_a", torch.tensor(ea, dtype=torch.long), persistent=False)
        self.register_buffer("pair_b", torch.tensor(eb, dtype=torch.long), persistent=False)
        self.register_buffer("pair_same", torch.tensor([a == b for a, b in zip(ea, eb)], dtype=torch.bool), persistent=False)
        # block columns: [radial (n_el * K_r) | moment angular (n_pairs_el * K_m) | zero]
        K_m = len(mom)
        zero_col = n_el * K_r + n_pairs_el * K_m
        src = torch.full((n_el, F), zero_col, dtype=torch.long)
        mom_pos = {k: row for row, k in enumerate(mom)}
        for c in range(n_el):
            for e in range(n_el):
                for k in range(K_r):
                    if rad_map[c, e, k] < F:
                        src[c, rad_map[c, e, k]] = e * K_r + k
            for p in range(n_pairs_el):
                for k, row in mom_pos.items():
                    if ang_map[c, p, k] < F:
                        src[c, ang_map[c, p, k]] = n_el * K_r + p * K_m + row
        self.register_buffer("block_src", src, persistent=False)
        self.register_buffer("tri_k", torch.tensor(tri, dtype=torch.long), persistent=False)
        # triplet kernels: values summed per (atom, neighbour-element pair) row, columns gathered like block_src
        K_t = len(tri)
        tri_src = torch.full((n_el, F), n_pairs_el * K_t, dtype=torch.long)
        for c in range(n_el):
            for p in range(n_pairs_el):
                for pos, k in enumerate(tri):
                    if ang_map[c, p, k] < F:
                        tri_src[c, ang_map[c, p, k]] = p * K_t + pos
        self.register_buffer("tri_src", tri_src, persistent=False)
        # the distinct (pair factor u, third factor w) combinations of the triplet kernels: their product is
        # formed once per combination, then each kernel multiplies its combination by its angular factor
        combos, tri_c = _unique([(int(self.ang_u[k]), int(self.ang_w[k])) for k in tri])
        self.register_buffer("tri_cu", torch.tensor([c[0] for c in combos], dtype=torch.long), persistent=False)
        self.register_buffer("tri_cw", torch.tensor([c[1] for c in combos], dtype=torch.long), persistent=False)
        self.register_buffer("tri_c", torch.tensor(tri_c, dtype=torch.long), persistent=False)
        # when every triplet kernel is narrow (type 3), a triplet with r_jk beyond their cutoffs adds exact zeros
        narrow_only = K_t > 0 and all(self.ang_kernels[k][0] == 3 for k in tri)
        self._tri_jk_cutoff = max(self.cut_sets[self.ang_kernels[k][5]][0] for k in tri) if narrow_only else None

    # -- configuration ---------------------------------------------------------------------------
    def config(self) -> dict:
        """Plain-data description from which ``ACSF(**config)`` rebuilds this descriptor."""
        return {"elements": list(self.elements), "functions": [f.to_dict() for f in self.functions]}

    def feature_names(self, element: str) -> list[str]:
        out = []
        for f in self.per_element[self.elements.index(element)]:
            nb = "-".join(f.neighbors)
            if f.angular:
                out.append(f"G{f.type}[{nb}] eta={f.eta:g} rs={f.rs:g} zeta={f.zeta:g} lambda={f.lam:g} rc={f.rc:g}")
            else:
                out.append(f"G2[{nb}] eta={f.eta:g} rs={f.rs:g} rc={f.rc:g}")
        return out

    # -- computation -------------------------------------------------------------------------------
    def _cutoffs(self, r: torch.Tensor) -> torch.Tensor:
        """f_c for every cutoff set: (n, n_sets)."""
        return torch.stack([cutoff_function(r, rc, kind, alpha) for (rc, kind, alpha) in self.cut_sets], dim=-1)

    # Each factor below is defined once; ``from_edges`` (fast inference) and ``jacobian``
    # (per-pair derivatives for training) only compose them differently.
    def _gaussians(self, r: torch.Tensor, eta, rs, cut, kernels=()) -> torch.Tensor:
        """exp(-η (r - r_s)²) f_c(r) for each column's (η, r_s, cutoff set): (n, len(eta)). ``kernels``: the
        columns' (η, r_s, cutoff set) as Python values; when they share one cutoff set (the usual case) only that
        cutoff function is evaluated, as one column broadcast over all (no gather, nor its scatter backwards)."""
        dt = r.dtype
        g = torch.exp(-eta.to(dt) * (r[:, None] - rs.to(dt)) ** 2)
        sets = {int(k[2]) for k in kernels}
        if len(sets) == 1:
            rc, kind, alpha = self.cut_sets[sets.pop()]
            return g * cutoff_function(r, rc, kind, alpha)[:, None]
        return g * self._cutoffs(r).index_select(1, cut)

    def _radial_values(self, r: torch.Tensor) -> torch.Tensor:
        """Radial kernels per pair: (n, K_r)."""
        return self._gaussians(r, self.rad_eta, self.rad_rs, self.rad_cut, self.rad_kernels)

    def _pair_factor(self, r: torch.Tensor) -> torch.Tensor:
        """exp(-η (r - r_s)²) f_c(r) of the angular kernels, per pair: (n, U)."""
        return self._gaussians(r, self.u_eta, self.u_rs, self.u_cut, self.ang_radial)

    def _angle_factor(self, cos: torch.Tensor) -> torch.Tensor:
        """2^(1-ζ) (1 + λ cos θ)^ζ: (n, V)."""
        dt = cos.dtype
        base = 1.0 + self.v_lam.to(dt) * cos[:, None]
        if self._integer_zeta:
            return self.v_pref.to(dt) * _int_pow(base, self._zeta_ints)
        return self.v_pref.to(dt) * base.clamp(min=0.0) ** self.v_zeta.to(dt)

    def _third_factor(self, rjk: torch.Tensor) -> torch.Tensor:
        """exp(-η (r_jk - r_s)²) f_c(r_jk) for narrow (type 3) kernels, and a column of ones: (n, W + 1)."""
        third = self._gaussians(rjk, self.w_eta, self.w_rs, self.w_cut, self.ang_third)
        return torch.cat([third, torch.ones_like(third[:, :1])], dim=1)

    def forward(self, positions, species, edge_index, shifts, cell, batch) -> torch.Tensor:
        vec = edge_vectors(positions, edge_index, shifts, cell, batch)
        return self.from_edges(vec, species, edge_index)

    def _columns(self, species, edge_index, r):
        """Target columns of the radial (P, K_r) and angular (T, K_a) values, and the triplets: as indices
        into the pair list (p1, p2) and into the pairs inside the angular cutoff (``plan``, :meth:`edge_plan`)."""
        i, j = edge_index
        zi, zj = species[i], species[j]
        rad_col = self.rad_map[zi, zj] if len(self.rad_kernels) else None
        p1 = p2 = ang_col = plan = None
        if len(self.ang_kernels):
            plan = self.edge_plan(r, species, edge_index)  # no r_jk filter: here every angular kernel uses triplets
            ang = plan["ang"]
            p1, p2 = ang.index_select(0, plan["p1"]), ang.index_select(0, plan["p2"])
            ang_col = self.ang_map[zi.index_select(0, p1), self.pair_id[zj.index_select(0, p1), zj.index_select(0, p2)]]
        return rad_col, p1, p2, ang_col, plan

    def edge_plan(self, r: torch.Tensor, species: torch.Tensor, edge_index: torch.Tensor, vec=None,
                  triplet_chunk: int | None = None, moment_chunk: int | None = None,
                  once_differentiable: bool = False) -> dict:
        """The index work of :meth:`from_edges` that depends only on which pairs are inside the angular
        cutoff: ``ang`` (the pairs with r < ``angular_cutoff``, in pair order); for the moment block, ``slot``
        (each of these pairs' place in a table of (centre atom, neighbour element) rows of ``width`` places) and
        ``moment_chunks`` (ranges of centre atoms and of their pairs, about ``moment_chunk`` monomial values
        each, default ``MOMENT_CHUNK``, evaluated one at a time);
        where some kernels go through triplets, ``p1``/``p2`` (the triplets, as indices into ``ang``; when
        every such kernel is narrow and ``vec`` is given, only those with r_jk inside their cutoff: the others
        add exact zeros) and ``chunks`` (ranges of at most ``triplet_chunk`` triplets, default
        ``TRIPLET_CHUNK``, evaluated one at a time). Computed without gradients, a group of centre atoms at a
        time; a caller may compute it once outside a compiled region and pass it to :meth:`from_edges`.
        ``once_differentiable``: the chunks are recomputed backwards by a plain autograd function (no second
        derivatives, as for a calculator) instead of ``torch.utils.checkpoint`` (whose first use imports
        torch's compiler stack, ~1 s, and keeps more)."""
        with torch.no_grad():
            plan = {"once_differentiable": bool(once_differentiable)}
            if not len(self.ang_kernels):
                return plan
            n_atoms, n_el = species.shape[0], len(self.elements)
            ang = torch.nonzero(r.detach() < self.angular_cutoff).squeeze(1)
            plan["ang"] = ang
            i = edge_index[0].index_select(0, ang)
            if len(self.mom_ku):
                row = i * n_el + species.index_select(0, edge_index[1].index_select(0, ang))
                order = torch.argsort(row, stable=True)
                counts = torch.bincount(row, minlength=n_atoms * n_el)
                start = torch.cumsum(counts, 0) - counts
                width = int(counts.max()) if counts.numel() and ang.numel() else 1
                rs = row.index_select(0, order)
                slot = torch.empty_like(row)
                slot[order] = rs * width + torch.arange(rs.shape[0], device=r.device) - start.index_select(0, rs)
                plan["slot"], plan["width"] = slot, width
                # groups of centre atoms with about `moment_chunk` monomial values each (ang is sorted by centre)
                per_chunk = max(1, int(moment_chunk or MOMENT_CHUNK) // max(1, self.mom_expo.shape[0]))
                n_i = torch.bincount(i, minlength=n_atoms)
                first = torch.cumsum(n_i, 0) - n_i
                _, sizes = torch.unique_consecutive(torch.div(first, per_chunk, rounding_mode="floor"), return_counts=True)
                atom_ends = torch.cumsum(sizes, 0)
                pair_ends = torch.cumsum(n_i, 0).index_select(0, atom_ends - 1)
                plan["moment_chunks"] = list(zip([0, *atom_ends.tolist()[:-1]], atom_ends.tolist(),
                                                 [0, *pair_ends.tolist()[:-1]], pair_ends.tolist()))
            if len(self.tri_k):
                chunk = int(triplet_chunk or TRIPLET_CHUNK)
                va = vec.detach().index_select(0, ang) if vec is not None and self._tri_jk_cutoff is not None else None
                counts = torch.bincount(i, minlength=n_atoms)
                ends = torch.cumsum(counts, 0).tolist()  # pair ranges of the centre atoms
                per_atom = (counts * (counts - 1) // 2).tolist()
                p1s, p2s, a0, p0, acc = [], [], 0, 0, 0
                for a in range(n_atoms + 1):  # groups of centre atoms with at most `chunk` triplets (or one atom)
                    if a == n_atoms or (acc and acc + per_atom[a] > chunk):
                        if acc:
                            p1, p2 = triplets(i[p0 : ends[a - 1]] - a0, a - a0)
                            p1, p2 = p1 + p0, p2 + p0
                            if va is not None:
                                d = va.index_select(0, p2) - va.index_select(0, p1)
                                keep = torch.nonzero((d * d).sum(1) < self._tri_jk_cutoff**2).squeeze(1)
                                p1, p2 = p1.index_select(0, keep), p2.index_select(0, keep)
                            p1s.append(p1)
                            p2s.append(p2)
                        if a == n_atoms:
                            break
                        a0, p0, acc = a, ends[a - 1] if a else 0, 0
                    acc += per_atom[a]
                p1 = torch.cat(p1s) if p1s else i.new_zeros(0)
                p2 = torch.cat(p2s) if p2s else i.new_zeros(0)
                plan["p1"], plan["p2"] = p1, p2
                bounds = list(range(0, p1.shape[0], chunk)) + [p1.shape[0]]
                plan["chunks"] = list(zip(bounds[:-1], bounds[1:])) or [(0, 0)]
            return plan

    def _traced_plan(self, r, species, edge_index, width: int | None = None) -> dict:
        """The plan of a traced (deployed, ``mlpot.deploy``) model: only tensor operations whose sizes follow the
        inputs, no Python number taken from the data (a trace would keep it as a constant): the pairs inside the
        angular cutoff and their (centre atom, neighbour element) rows; with ``width`` (the size of an input, so
        the trace follows it: the largest number of pairs of one row, which the caller counts) each pair's slot
        in the padded moment table, else the moment sums are scattered by row; triplets are enumerated in one go.
        """
        with torch.no_grad():
            ang = torch.nonzero(r.detach() < self.angular_cutoff).squeeze(1)
            rows = edge_index[0].index_select(0, ang) * len(self.elements) + \
                species.index_select(0, edge_index[1].index_select(0, ang))
            plan = {"ang": ang, "rows": rows, "p1": None, "p2": None}
            if width is not None and len(self.mom_ku):
                order = torch.argsort(rows, stable=True)
                counts = torch.bincount(rows, minlength=species.shape[0] * len(self.elements))
                start = torch.cumsum(counts, 0) - counts
                rs = rows.index_select(0, order)
                slot = torch.empty_like(rows)
                slot[order] = rs * width + torch.arange(rs.shape[0], device=r.device) - start.index_select(0, rs)
                plan["slot"], plan["width"] = slot, width
            return plan

    def table_cutoff(self) -> float:
        """The cutoff of the rows of the padded moment table (0: no table): what a deployed model's caller counts
        the largest row for (``mlpot.deploy``)."""
        return float(self.angular_cutoff) if len(self.mom_ku) else 0.0

    def from_edges(self, vec: torch.Tensor, species: torch.Tensor, edge_index: torch.Tensor,
                   plan: dict | None = None) -> torch.Tensor:
        """Descriptors (n_atoms, n_features) from the pair vectors r_ij (edge_index sorted by centre).

        Per-atom blocks (radial kernels per neighbour element, moment-expanded angular kernels per
        neighbour-element pair) are summed as whole rows, then each central element's columns are
        gathered from them; the remaining angular kernels are added from triplets. The angular work
        runs only over the pairs inside ``angular_cutoff`` (every angular kernel is exactly 0 beyond its
        own cutoff, so the others would add exact zeros); ``plan``: :meth:`edge_plan`, computed here when
        None.
        """
        n_atoms, n_el = species.shape[0], len(self.elements)
        r = torch.linalg.norm(vec, dim=-1)
        i, j = edge_index
        row = i * n_el + species.index_select(0, j)  # (centre atom, neighbour element)
        if plan is None:
            plan = self._traced_plan(r, species, edge_index) if torch.jit.is_tracing() else \
                self.edge_plan(r, species, edge_index, vec)
        blocks = []
        if len(self.rad_kernels):
            R = vec.new_zeros(n_atoms * n_el, len(self.rad_kernels)).index_add(0, row, self._radial_values(r))
            blocks.append(R.view(n_atoms, -1))
        if len(self.ang_kernels):
            ang = plan["ang"]
            vec_a, r_a = vec.index_select(0, ang), r.index_select(0, ang)
        if len(self.mom_ku):
            blocks.append(self._moment_chunks(vec_a, r_a, plan, n_atoms).reshape(n_atoms, -1))
        blocks.append(vec.new_zeros(n_atoms, 1))
        G = torch.cat(blocks, 1).gather(1, self.block_src.index_select(0, species))
        if len(self.tri_k):
            G = G + self._triplet_block(vec_a, r_a, species, edge_index.index_select(1, ang), plan["p1"], plan["p2"],
                                        plan.get("chunks"), plan.get("once_differentiable", False))
        return G

    def _moment_pair_factor(self, r: torch.Tensor) -> torch.Tensor:
        """exp(-η (r - r_s)²) f_c(r) of the moment-expanded angular kernels, per pair: (P, U)."""
        return self._gaussians(r, self.mom_eta, self.mom_rs, self.mom_cut, self.mom_radial)

    def _moment_chunks(self, vec, r, plan, n_atoms):
        """:meth:`_moment_block` over the planned groups of centre atoms; with several, each group is recomputed
        in the backward pass (``torch.utils.checkpoint``), so that memory stays bounded by one group's
        monomials whatever the number of atoms."""
        if "slot" not in plan:  # traced for deployment (_traced_plan)
            return self._moment_block(vec, r, None, 0, n_atoms, plan["rows"])
        slot, width, chunks = plan["slot"], plan["width"], plan.get("moment_chunks")
        if not chunks or len(chunks) == 1:
            return self._moment_block(vec, r, slot, width, n_atoms)
        rows = width * len(self.elements)
        recompute = _recompute_once if plan.get("once_differentiable") else _checkpoint
        parts = [recompute(lambda v, rr, a0=a0, a1=a1, p0=p0, p1=p1: self._moment_block(
                     v, rr, slot[p0:p1] - a0 * rows, width, a1 - a0), vec[p0:p1], r[p0:p1])
                 for a0, a1, p0, p1 in chunks]
        return torch.cat(parts, 0)

    def _moment_block(self, vec, r, slot, width: int, n_atoms, rows=None):
        """Wide angular kernels with integer ζ from per-pair monomial sums: (n_atoms, n_pairs_el, K_m).
        ``slot``: each pair's place in a zero-padded table of ``width`` places per (centre atom, neighbour element)
        row, so that the sums Q = Σ_j h_j ⊗ m(û_ij) are one batched matrix product per row (no (P, U, M)
        intermediate in the forward or the backward pass). Without ``slot`` (a traced model, whose table width
        would be a constant of the trace) the same sums are scattered by ``rows``, each pair's row."""
        n_el = len(self.elements)
        h = self._moment_pair_factor(r)  # (P, U)
        unit = vec / r[:, None]
        U, R, M = h.shape[1], n_atoms * n_el, self.mom_expo.shape[0]
        if slot is None:
            mono = angular_monomials(unit, self.mom_expo, self._max_degree)  # (P, M)
            q = (h[:, :, None] * mono[:, None, :]).reshape(-1, U * M)
            Q = vec.new_zeros(R, U * M).index_add(0, rows, q).view(n_atoms, n_el, U, M)
            return self._moment_from_sums(Q, vec.new_zeros(R, U).index_add(0, rows, h * h).view(n_atoms, n_el, U))
        h_pad = vec.new_zeros(R * width, U).index_copy(0, slot, h).view(R, width, U)
        # the monomials of the padded table of unit vectors (3 columns to place, not M): an empty place holds û = 0,
        # whose monomials are finite and meet h = 0 there
        u_pad = vec.new_zeros(R * width, 3).index_copy(0, slot, unit)
        m_pad = angular_monomials(u_pad, self.mom_expo, self._max_degree).view(R, width, M)
        Q = torch.bmm(h_pad.transpose(1, 2), m_pad).view(n_atoms, n_el, U, M)
        D = (h_pad * h_pad).sum(1).view(n_atoms, n_el, U)
        return self._moment_from_sums(Q, D)

    def _moment_from_sums(self, Q, D):
        """The moment kernels from Q[i, a] = Σ_{j∈a} h_j m(û_ij) (n_atoms, n_el, U, M) and
        D[i, a] = Σ_{j∈a} h_j² (n_atoms, n_el, U): (n_atoms, n_pairs_el, K_m)."""
        dt = Q.dtype
        # S_n = Σ_{j,k} h_j h_k cos^n θ_jk over neighbours j of element a and k of element b
        S = (Q.index_select(1, self.pair_a) * Q.index_select(1, self.pair_b)) @ self.mom_deg.to(dt)
        same = self.pair_same.to(dt)[:, None, None]
        # a == b: drop the j == k terms (cos = 1) and count each unordered pair once
        S = (S - same * D.index_select(1, self.pair_a)[..., None]) * (1.0 - 0.5 * same)
        return (S.index_select(2, self.mom_ku) * self.mom_coef.to(dt)).sum(-1)

    def _triplet_block(self, vec, r, species, edge_index, p1=None, p2=None, chunks=None,
                       once_differentiable: bool = False):
        """The angular kernels not covered by the moment expansion, from triplets: (n_atoms, F).
        ``vec``, ``r``, ``edge_index``: the pairs inside the angular cutoff (sorted by centre); ``p1``, ``p2``:
        their triplets (all of them when None). Values are summed per (centre atom, neighbour-element pair)
        row of kernels, then each central element's columns are gathered (``tri_src``). With several
        ``chunks`` (ranges of triplets), each is evaluated on its own and recomputed in the backward pass
        (``torch.utils.checkpoint``), so that memory stays bounded by one chunk's intermediates."""
        n_atoms, n_el = species.shape[0], len(self.elements)
        n_pairs_el = n_el * (n_el + 1) // 2
        i, j = edge_index
        if p1 is None:
            p1, p2 = triplets(i, n_atoms)
        rowkey = i * n_pairs_el  # + pair_id of the two neighbours' elements
        zj = species.index_select(0, j)
        h = self._pair_factor(r)
        ks = self.tri_k
        v = self.ang_v[ks]

        def part(vec, h, r, q1, q2):  # every differentiable input an argument (recomputed chunks)
            rows = rowkey.index_select(0, q1) + self.pair_id[zj.index_select(0, q1), zj.index_select(0, q2)]
            v1, v2 = vec.index_select(0, q1), vec.index_select(0, q2)
            cos = (v1 * v2).sum(-1) / (r.index_select(0, q1) * r.index_select(0, q2))
            radial = (h.index_select(0, q1) * h.index_select(0, q2)).index_select(1, self.tri_cu)
            if len(self.ang_third):
                radial = radial * self._third_factor(torch.linalg.norm(v2 - v1, dim=-1)).index_select(1, self.tri_cw)
            val = radial.index_select(1, self.tri_c) * self._angle_factor(cos).index_select(1, v)
            return vec.new_zeros(n_atoms * n_pairs_el, ks.shape[0]).index_add(0, rows, val)

        if not chunks or len(chunks) == 1:
            block = part(vec, h, r, p1, p2)
        else:
            recompute = _recompute_once if once_differentiable else _checkpoint
            block = None
            for s, e in chunks:
                b = recompute(lambda v, hh, rr, s=s, e=e: part(v, hh, rr, p1[s:e], p2[s:e]), vec, h, r)
                block = b if block is None else block + b
        block = torch.cat([block.view(n_atoms, -1), vec.new_zeros(n_atoms, 1)], 1)
        return block.gather(1, self.tri_src.index_select(0, species))

    def jacobian(self, vec: torch.Tensor, species: torch.Tensor, edge_index: torch.Tensor):
        """Descriptors G (n_atoms, F) and their derivatives with respect to each pair vector,
        J (n_pairs, F, 3) with J[p, f] = ∂G[i(p), f] / ∂r_p (each G_i depends only on the pairs
        centred on i). Used to train without recomputing descriptors (n2p2's approach).

        The one-variable factors are differentiated by forward-mode AD (``_with_derivative``) and
        combined by the product and chain rules, so no formula is written twice.
        """
        if not len(self.tri_k):
            return self._pair_sum_jacobian(vec, species, edge_index)
        n_atoms, F = species.shape[0], self.n_features
        vec = vec.detach()
        r = torch.linalg.norm(vec, dim=-1)
        unit = vec / r[:, None]
        i = edge_index[0]
        G = torch.zeros(n_atoms * (F + 1), dtype=vec.dtype, device=vec.device)
        J = torch.zeros(vec.shape[0] * (F + 1), 3, dtype=vec.dtype, device=vec.device)
        rad_col, p1, p2, ang_col, plan = self._columns(species, edge_index, r)
        if rad_col is not None:
            val, dval = _with_derivative(self._radial_values, r)
            G.index_add_(0, (i[:, None] * (F + 1) + rad_col).reshape(-1), val.reshape(-1))
            pidx = torch.arange(vec.shape[0], device=vec.device)
            J.index_add_(0, (pidx[:, None] * (F + 1) + rad_col).reshape(-1), (dval[:, :, None] * unit[:, None, :]).reshape(-1, 3))
        if ang_col is not None:
            h, dh = _with_derivative(self._pair_factor, r.index_select(0, plan["ang"]))  # pairs inside the angular cutoff
            sel = lambda x, idx: x.index_select(0, idx).index_select(1, self.ang_u)  # noqa: E731
            q1, q2 = plan["p1"], plan["p2"]
            h1, dh1, h2, dh2 = sel(h, q1), sel(dh, q1), sel(h, q2), sel(dh, q2)  # (T, K)
            u1, u2 = unit.index_select(0, p1), unit.index_select(0, p2)
            r1, r2 = r.index_select(0, p1)[:, None], r.index_select(0, p2)[:, None]
            cos = (u1 * u2).sum(-1)
            a, da = (x.index_select(1, self.ang_v) for x in _with_derivative(self._angle_factor, cos))
            narrow = len(self.ang_third) > 0
            if narrow:  # fold the r_jk factor t into a; keep a·dt for ∂/∂r_jk
                d12 = vec.index_select(0, p2) - vec.index_select(0, p1)
                rjk = torch.linalg.norm(d12, dim=-1)
                t, dt = (x.index_select(1, self.ang_w) for x in _with_derivative(self._third_factor, rjk))
                a_dt, a, da = a * dt, a * t, da * t
            base = h1 * h2
            val = base * a
            sc = base * da  # ∂val/∂cos
            # ∂cos/∂v1 = (u2 - cos u1) / r1. Terms along the pair's own unit vector are scattered as
            # scalars and multiplied by it once per pair; only the cross terms need (T, K, 3).
            along1 = dh1 * h2 * a - sc * cos[:, None] / r1
            along2 = h1 * dh2 * a - sc * cos[:, None] / r2
            d1 = (sc / r1)[..., None] * u2[:, None, :]
            d2 = (sc / r2)[..., None] * u1[:, None, :]
            if narrow:
                sj = (base * a_dt)[..., None] * (d12 / rjk[:, None])[:, None, :]  # ∂val/∂r_jk ⊗ ∂r_jk/∂v2
                d1 = d1 - sj
                d2 = d2 + sj
            center = i.index_select(0, p1)
            G.index_add_(0, (center[:, None] * (F + 1) + ang_col).reshape(-1), val.reshape(-1))
            J.index_add_(0, (p1[:, None] * (F + 1) + ang_col).reshape(-1), d1.reshape(-1, 3))
            J.index_add_(0, (p2[:, None] * (F + 1) + ang_col).reshape(-1), d2.reshape(-1, 3))
            scal = torch.zeros(vec.shape[0] * (F + 1), dtype=vec.dtype, device=vec.device)
            scal.index_add_(0, (p1[:, None] * (F + 1) + ang_col).reshape(-1), along1.reshape(-1))
            scal.index_add_(0, (p2[:, None] * (F + 1) + ang_col).reshape(-1), along2.reshape(-1))
            J.add_(scal[:, None] * unit.repeat_interleave(F + 1, dim=0))
        return G.view(n_atoms, F + 1)[:, :F], J.view(vec.shape[0], F + 1, 3)[:, :F]

    def _pair_sum_jacobian(self, vec, species, edge_index):
        """``jacobian`` when every angular kernel is moment-expanded: G is a function of per-atom sums
        of per-pair terms (per neighbour element: the radial kernels, h ⊗ m(û) and h²), so the pair
        Jacobian has the generic pair-sum form (``pairsum.pair_sum_jacobian``): O(pairs), no triplets."""
        vec = vec.detach()
        n_atoms, n_pairs, n_el = species.shape[0], vec.shape[0], len(self.elements)
        r = torch.linalg.norm(vec, dim=-1)
        unit = vec / r[:, None]
        parts, dparts = [], []
        if len(self.rad_kernels):
            val, dval = _with_derivative(self._radial_values, r)
            parts.append(val)
            dparts.append(dval[:, :, None] * unit[:, None, :])
        K_r = len(self.rad_kernels)
        U = M = 0
        if len(self.mom_ku):  # computed for the pairs inside the angular cutoff; exact zeros for the others
            ang = torch.nonzero(r < self.angular_cutoff).squeeze(1)
            ra, ua = r.index_select(0, ang), unit.index_select(0, ang)
            h, dh = _with_derivative(self._moment_pair_factor, ra)
            mono, dmono = angular_monomials_with_grad(ua, ra, self.mom_expo, self._max_degree)
            U, M = h.shape[1], mono.shape[1]
            q = (h[:, :, None] * mono[:, None, :]).reshape(-1, U * M)
            dq = dh[:, :, None, None] * mono[:, None, :, None] * ua[:, None, None, :] + h[:, :, None, None] * dmono[:, None]
            q_all = vec.new_zeros(n_pairs, U * M + U).index_copy(0, ang, torch.cat([q, h * h], 1))
            dq_all = vec.new_zeros(n_pairs, U * M + U, 3).index_copy(
                0, ang, torch.cat([dq.reshape(-1, U * M, 3), (2.0 * h * dh)[:, :, None] * ua[:, None, :]], 1))
            parts.append(q_all)
            dparts.append(dq_all)
        B = K_r + U * M + U
        phi, dphi = torch.cat(parts, 1), torch.cat(dparts, 1)
        if n_el > 1:  # place each pair's terms in its neighbour element's block
            zj = species.index_select(0, edge_index[1])
            full = vec.new_zeros(n_pairs, n_el, B)
            dfull = vec.new_zeros(n_pairs, n_el, B, 3)
            full[torch.arange(n_pairs, device=vec.device), zj] = phi
            dfull[torch.arange(n_pairs, device=vec.device), zj] = dphi
            phi, dphi = full.view(n_pairs, n_el * B), dfull.view(n_pairs, n_el * B, 3)
        def combine(A, rows):
            src = self.block_src.index_select(0, species.index_select(0, rows))
            A = A.view(-1, n_el, B)
            blocks = []
            if K_r:
                blocks.append(A[..., :K_r].reshape(-1, n_el * K_r))
            if U:
                Q = A[..., K_r : K_r + U * M].reshape(-1, n_el, U, M)
                blocks.append(self._moment_from_sums(Q, A[..., K_r + U * M :]).reshape(A.shape[0], -1))
            blocks.append(A.new_zeros(A.shape[0], 1))
            return torch.cat(blocks, 1).gather(1, src)

        return pair_sum_jacobian(phi, dphi, combine, edge_index[0], n_atoms)


def _checkpoint(fn, *xs):
    """fn(*xs), recomputed in the backward pass (``torch.utils.checkpoint``, differentiable twice)."""
    from torch.utils.checkpoint import checkpoint

    return checkpoint(fn, *xs, use_reentrant=False)


class _RecomputeOnce(torch.autograd.Function):
    """fn(*xs) without a graph in the forward pass; the backward pass recomputes it with one and returns the
    vector-Jacobian product (first derivatives only)."""

    @staticmethod
    def forward(ctx, fn, *xs):
        ctx.fn = fn
        ctx.save_for_backward(*xs)
        return fn(*xs)

    @staticmethod
    def backward(ctx, grad):
        xs = [x.detach().requires_grad_(need) for x, need in zip(ctx.saved_tensors, ctx.needs_input_grad[1:])]
        wanted = [x for x in xs if x.requires_grad]
        # the vector-Jacobian product as the gradient of <out, grad> (the same numbers): torch.autograd.grad given
        # grad_outputs imports torch's symbolic-shape machinery (sympy), 0.5 s in a calculator's first call
        with torch.enable_grad():
            inner = (ctx.fn(*xs) * grad).sum()
        grads = iter(torch.autograd.grad(inner, wanted, allow_unused=True) if wanted else ())
        return (None, *[next(grads) if x.requires_grad else None for x in xs])


def _recompute_once(fn, *xs):
    return _RecomputeOnce.apply(fn, *xs)


TRIPLET_CHUNK = 1 << 20  # triplets per chunk of the triplet block (about 0.5 GB of intermediates in float64)
MOMENT_CHUNK = 1 << 24  # monomial values (pairs x monomials) per group of atoms of the moment block (~1 GB in float64)


def _with_derivative(fn, x: torch.Tensor):
    """fn(x) and d fn / dx for a row-wise function of one scalar per row (forward-mode AD)."""
    from torch.func import jvp

    return jvp(fn, (x,), (torch.ones_like(x),))


def _int_pow(base: torch.Tensor, zs) -> torch.Tensor:
    """base ** zeta column-wise for the integer exponents ``zs`` (Python ints), by repeated multiplication
    (cheap and exact)."""
    zs = [int(z) for z in zs]
    if len(set(zs)) == 1:
        return base ** zs[0]
    return torch.stack([base[:, k] ** z for k, z in enumerate(zs)], dim=1)


def grid_functions(
    elements,
    cutoff: float,
    cutoff_function: str = "cos",
    alpha: float = 0.0,
    radial: dict | None = None,
    angular: dict | list | None = None,
) -> list[SymmetryFunction]:
    """Symmetry functions on a parameter grid, for every central element and neighbour (pair).

    radial: {eta: [...], rs: [...], rc: optional} (all combinations), or a list of such;
    angular: {type: 3|9, eta: [...], zeta: [...], lambda: [...], rs: [...], rc: optional}, or a list of such.
    ``rc`` in a spec overrides the shared cutoff (e.g. a shorter angular cutoff, as in ANI).
    """
    elements = list(elements)
    out = []
    common = dict(rc=cutoff, cutoff=cutoff_function, alpha=alpha)
    for c in elements:
        for spec in [radial] if isinstance(radial, Mapping) else (radial or []):
            for nb in elements:
                for eta, rs in itertools.product(spec["eta"], spec.get("rs", [0.0])):
                    out.append(SymmetryFunction(2, c, (nb,), float(eta), rs=float(rs),
                                                **{**common, "rc": float(spec.get("rc") or cutoff)}))
        for spec in [angular] if isinstance(angular, Mapping) else (angular or []):
            for pair in itertools.combinations_with_replacement(elements, 2):
                for eta, zeta, lam, rs in itertools.product(
                    spec["eta"], spec.get("zeta", [1.0]), spec.get("lambda", [1.0, -1.0]), spec.get("rs", [0.0])
                ):
                    out.append(
                        SymmetryFunction(
                            int(spec.get("type", 9)), c, pair, float(eta), rs=float(rs), zeta=float(zeta),
                            lam=float(lam), **{**common, "rc": float(spec.get("rc") or cutoff)},
                        )
                    )
    return out


def build_acsf(
    elements,
    cutoff: float = 6.0,
    cutoff_function: str = "cos",
    alpha: float = 0.0,
    radial: dict | None = None,
    angular: dict | list | None = None,
    functions: list | None = None,
) -> ACSF:
    """ACSF from an explicit list (``functions``: dicts; ``central``/``neighbors`` default to all
    elements, ``rc``/``cutoff``/``alpha`` to the shared values) and/or a grid."""
    elements = list(elements)
    funcs = grid_functions(elements, cutoff, cutoff_function, alpha, radial, angular)
    for spec in functions or []:
        spec = dict(spec)
        t = int(spec.pop("type"))
        centrals = [spec.pop("central")] if spec.get("central") else elements
        spec.pop("central", None)
        nbs = spec.pop("neighbors", None)
        if "lambda" in spec:
            spec["lam"] = spec.pop("lambda")
        spec.setdefault("rc", cutoff)
        spec.setdefault("cutoff", cutoff_function)
        spec.setdefault("alpha", alpha)
        if nbs is None:
            nb_list = [(e,) for e in elements] if t == 2 else list(itertools.combinations_with_replacement(elements, 2))
        else:
            nb_list = [tuple(nbs)]
        for c in centrals:
            for nb in nb_list:
                funcs.append(SymmetryFunction(t, c, nb, **spec))
    return ACSF(elements, funcs)


# The Au study's 26 functions (docs/science.md §3): 8 radial + 18 wide angular, polynomial cutoff, 6 Å.
AU_RADIAL_ETA = [0.006428, 0.012856, 0.010357, 0.051424, 0.102848, 0.205696, 0.411392, 0.822784]
AU_ANGULAR_ETA = [0.000357, 0.028569, 0.085357]


def au_study(elements, cutoff: float = 6.0, cutoff_function: str = "poly2", rs: float = 0.0, alpha: float = 0.0) -> ACSF:
    """The Au study's set for any element list (8 radial + 18 angular per neighbour combination)."""
    return build_acsf(
        elements,
        cutoff=cutoff,
        cutoff_function=cutoff_function,
        alpha=alpha,
        radial={"eta": AU_RADIAL_ETA, "rs": [rs]},
        angular={"type": 9, "eta": AU_ANGULAR_ETA, "zeta": [2, 3, 4], "lambda": [1, -1], "rs": [rs]},
    )


__all__ = ["ACSF", "SymmetryFunction", "build_acsf", "grid_functions", "au_study"]
