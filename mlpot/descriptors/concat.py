"""Concatenation of descriptors: each atom's feature vector is its parts' vectors one after another.

For an element e the features are [part 0's n_0(e) features, part 1's n_1(e) features, …], so
``n_features_per_element[e] = Σ_k n_k(e)`` and, as for every descriptor, rows of an element with fewer
features than ``n_features`` are zero-padded at the end. Each part sees only the pairs inside its own
cutoff; the neighbour list is built with the largest. Parts are any registered descriptors
(``mlpot.export.register_descriptor``), so a concatenation is saved and loaded like any other.

Use: combine a descriptor that resolves the angular structure finely (e.g. the coupled Bessel power
spectrum) with smooth radial functions (wide Gaussian ACSF) that measure coordination directly.
"""

from __future__ import annotations

import torch
from torch import nn

from mlpot.descriptors.geometry import edge_vectors


class Concat(nn.Module):
    def __init__(self, parts):
        super().__init__()
        parts = [self._build(p) for p in parts]
        if not parts:
            raise ValueError("Concat needs at least one descriptor part")
        self.elements = list(parts[0].elements)
        for k, p in enumerate(parts[1:], 1):
            if list(p.elements) != self.elements:
                raise ValueError(f"descriptor part {k} has elements {list(p.elements)}, part 0 has {self.elements}")
        self.parts = nn.ModuleList(parts)
        self.cutoff = max(float(p.cutoff) for p in parts)
        per = [list(p.n_features_per_element) for p in parts]
        self.n_features_per_element = [sum(n[e] for n in per) for e in range(len(self.elements))]
        self.n_features = max(self.n_features_per_element)
        # columns[e]: for element e, where each output column comes from in [part 0 | part 1 | … | 0]
        widths = [int(p.n_features) for p in parts]
        offsets = [sum(widths[:k]) for k in range(len(parts))]
        zero = sum(widths)
        cols = torch.full((len(self.elements), self.n_features), zero, dtype=torch.long)
        for e in range(len(self.elements)):
            src = [offsets[k] + c for k in range(len(parts)) for c in range(per[k][e])]
            cols[e, : len(src)] = torch.tensor(src, dtype=torch.long)
        self.register_buffer("columns", cols, persistent=False)

    @staticmethod
    def _build(part):
        if isinstance(part, nn.Module):
            return part
        from mlpot.export import DESCRIPTORS, _build  # the registry and builder of saved models

        return _build(DESCRIPTORS, "descriptor", part, "a Concat part")

    def config(self) -> dict:
        from mlpot.export import DESCRIPTORS, _class_name

        return {"parts": [{"class": _class_name(DESCRIPTORS, "descriptor", p), "config": p.config()} for p in self.parts]}

    def feature_names(self, element: str) -> list[str]:
        return [f"{k}:{name}" for k, p in enumerate(self.parts) for name in p.feature_names(element)]

    def _inside(self, part, r):
        """Indices of the pairs inside ``part``'s cutoff (all pairs when it is the largest)."""
        if float(part.cutoff) >= self.cutoff:
            return None
        return torch.nonzero(r < float(part.cutoff)).squeeze(1)

    def _gather(self, blocks, species_rows):
        """Each row's columns in the order of its element (see ``columns``)."""
        full = torch.cat([*blocks, blocks[0].new_zeros(blocks[0].shape[0], 1)], 1)
        return full.gather(1, self.columns.index_select(0, species_rows))

    def forward(self, positions, species, edge_index, shifts, cell, batch) -> torch.Tensor:
        return self.from_edges(edge_vectors(positions, edge_index, shifts, cell, batch), species, edge_index)

    def from_edges(self, vec, species, edge_index) -> torch.Tensor:
        """Descriptors (n_atoms, n_features) from the pair vectors r_ij (edge_index sorted by centre)."""
        r = torch.linalg.norm(vec.detach(), dim=-1)
        blocks = []
        for p in self.parts:
            sel = self._inside(p, r)
            if sel is None:
                blocks.append(p.from_edges(vec, species, edge_index))
            else:
                blocks.append(p.from_edges(vec.index_select(0, sel), species, edge_index.index_select(1, sel)))
        return self._gather(blocks, species)

    def jacobian(self, vec, species, edge_index):
        """G (n_atoms, F) and J (n_pairs, F, 3), J[p, f] = ∂G[i(p), f]/∂r_p: the parts' blocks side by side
        (zero for pairs outside a part's cutoff), columns in each centre element's order."""
        vec = vec.detach()
        r = torch.linalg.norm(vec, dim=-1)
        Gs, Js = [], []
        for p in self.parts:
            sel = self._inside(p, r)
            if sel is None:
                G, J = p.jacobian(vec, species, edge_index)
            else:
                G, Jsub = p.jacobian(vec.index_select(0, sel), species, edge_index.index_select(1, sel))
                J = Jsub.new_zeros(vec.shape[0], Jsub.shape[1], 3)
                J[sel] = Jsub
            Gs.append(G)
            Js.append(J)
        G = self._gather(Gs, species)
        Jfull = torch.cat([*Js, Js[0].new_zeros(vec.shape[0], 1, 3)], 1)
        cols = self.columns.index_select(0, species.index_select(0, edge_index[0]))  # (P, F)
        J = Jfull.gather(1, cols[..., None].expand(-1, -1, 3))
        return G, J


__all__ = ["Concat"]
