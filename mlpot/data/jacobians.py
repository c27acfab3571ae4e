"""Stored descriptors and element-blocked pair Jacobians: the cached-Jacobian training path's data.

Positions are fixed during training, so (as n2p2 does) each frame's descriptors G (n_atoms, F) and pair
Jacobians J_p = ∂G_i(p)/∂r_p (F, 3) can be computed once; a training step is then the networks plus
c_p = J_p^T ∂E/∂G_i(p) (``Potential.forward_cached``).

**Element blocks.** A pair whose centre has element c and whose neighbour has element e touches only some
of the feature columns of element c (the radial functions of neighbour e, the angular ones of the element
pairs that contain e, ...). :func:`probe_layout` finds these columns for any descriptor, once, from the
pair Jacobians of random clusters (float64, every element around every centre at distances spread over the
cutoff); only those columns are stored, a pair's row of ``width(c, e) × 3`` values. Every stored chunk is
checked: a non-zero value outside its block raises :class:`LayoutError` (the store is then rebuilt with
the wider layout), so the blocking can never drop a term.

**Bounded memory.** :func:`compute_records` works on groups of frames (neighbour lists of about
``group_pairs`` pairs) and within a group on chunks of centre atoms whose dense J takes at most
``chunk_bytes``, whatever the number of elements and features.

A record (one frame) holds ``species``, ``G``, ``edge_index`` (frame-local, pairs sorted by centre), ``vec``,
``J`` (the blocked values of all pairs, flat, in pair order), ``n_atoms``, ``volume`` and the labels with
their masks. :func:`collate` makes a batch for ``Potential.forward_cached``: ``J`` a tuple of (P_b, width_b, 3)
tensors, one per element block, ``J_columns`` their columns and ``J_order`` the pairs they hold.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import torch

from mlpot.data.graph import AtomicGraph, merge_graphs
from mlpot.descriptors.geometry import edge_vectors

LAYOUT_VERSION = 1
LABEL_FIELDS = ("energy", "forces", "stress", "atomic_energies")
CHUNK_BYTES = 1 << 28  # dense J of one chunk of centre atoms (256 MiB)
GROUP_PAIRS = 1 << 16  # frames are grouped until their neighbour lists reach this many pairs


class LayoutError(RuntimeError):
    """A pair Jacobian with a non-zero value outside its element block (``columns`` holds what was missed)."""

    def __init__(self, block: int, columns: list[int]):
        self.block, self.columns = block, columns
        super().__init__(f"pair Jacobian non-zero outside element block {block}, columns {columns[:10]}")


@dataclass
class BlockLayout:
    """Per block b = c · n_elements + e (centre element c, neighbour element e): the feature columns of
    element c that a pair (c, e) can touch, ascending."""

    n_elements: int
    n_features: int
    columns: list[list[int]]

    @property
    def n_blocks(self) -> int:
        return self.n_elements**2

    def widths(self) -> torch.Tensor:
        return torch.tensor([len(c) for c in self.columns], dtype=torch.long)

    def column_tensors(self) -> list[torch.Tensor | None]:
        """Per block, its columns as a tensor, or None where the block holds every column (no gather)."""
        full = list(range(self.n_features))
        return [None if c == full else torch.tensor(c, dtype=torch.long) for c in self.columns]

    def widen(self, block: int, columns) -> BlockLayout:
        cols = [list(c) for c in self.columns]
        cols[block] = sorted(set(cols[block]) | {int(x) for x in columns})
        return BlockLayout(self.n_elements, self.n_features, cols)

    def to_json(self) -> str:
        return json.dumps({"version": LAYOUT_VERSION, "n_elements": self.n_elements, "n_features": self.n_features,
                           "columns": self.columns})

    @classmethod
    def from_json(cls, text: str) -> BlockLayout:
        d = json.loads(text)
        return cls(int(d["n_elements"]), int(d["n_features"]), [list(map(int, c)) for c in d["columns"]])

    def bytes_per_pair(self, itemsize: int) -> torch.Tensor:
        """Per block, the stored bytes of one pair's Jacobian row."""
        return self.widths() * 3 * itemsize


@torch.no_grad()
def probe_layout(descriptor, n_neighbors: int = 48, draws: int = 2, seed: int = 1234) -> BlockLayout:
    """The element blocks of ``descriptor`` (see the module doc), from the Jacobians of random clusters:
    around a centre of each element, ``n_neighbors`` atoms of every element at distances spread evenly
    over (0, cutoff) in random directions (float64)."""
    import copy

    desc = copy.deepcopy(descriptor).to("cpu")
    n_el, F = len(desc.elements), int(desc.n_features)
    rc = float(desc.cutoff)
    gen = torch.Generator().manual_seed(seed)
    mask = torch.zeros(n_el, n_el, F, dtype=torch.bool)
    for _ in range(draws):
        for c in range(n_el):
            m = n_neighbors
            frac = (torch.arange(m, dtype=torch.float64) + torch.rand(m, generator=gen, dtype=torch.float64)) / m
            dist = (0.03 + 0.94 * frac).repeat(n_el) * rc
            dirs = torch.randn(n_el * m, 3, generator=gen, dtype=torch.float64)
            vec = dirs / torch.linalg.norm(dirs, dim=1, keepdim=True) * dist[:, None]
            nb = torch.arange(n_el).repeat_interleave(m)
            species = torch.cat([torch.tensor([c]), nb])
            edge_index = torch.stack([torch.zeros(n_el * m, dtype=torch.long), torch.arange(1, n_el * m + 1)])
            _, J = desc.jacobian(vec, species, edge_index)
            nz = J.abs().amax(-1) != 0  # (P, F)
            for e in range(n_el):
                mask[c, e] |= nz[nb == e].any(0)
    columns = [torch.nonzero(mask[c, e]).squeeze(1).tolist() for c in range(n_el) for e in range(n_el)]
    return BlockLayout(n_el, F, columns)


def pair_blocks(species: torch.Tensor, edge_index: torch.Tensor, n_elements: int) -> torch.Tensor:
    """Each pair's block c · n_elements + e."""
    return species.index_select(0, edge_index[0]) * n_elements + species.index_select(0, edge_index[1])


def split_blocks(J: torch.Tensor, block: torch.Tensor, layout: BlockLayout):
    """Dense pair Jacobians J (P, F, 3) as blocks: ``[(b, pairs of block b (ascending), their rows
    (P_b, width_b, 3))]`` for the blocks present; raises :class:`LayoutError` for a non-zero value outside a
    block (so the blocking never drops a term)."""
    out = []
    for b in torch.unique(block).tolist():
        cols = layout.columns[b]
        ps = torch.nonzero(block == b).squeeze(1)
        sub = J.index_select(0, ps)
        inside = torch.zeros(layout.n_features, dtype=torch.bool, device=J.device)
        inside[cols] = True
        if not bool(inside.all()):
            outside = (sub[:, ~inside] != 0).any(0).any(-1)
            if bool(outside.any()):
                raise LayoutError(b, torch.nonzero(~inside).squeeze(1)[outside].tolist())
        out.append((b, ps, sub.index_select(1, torch.tensor(cols, dtype=torch.long, device=J.device))))
    return out


def _chunks(center: torch.Tensor, n_atoms: int, max_pairs: int):
    """(a0, a1, p0, p1): ranges of centre atoms whose pairs (sorted by centre) number at most ``max_pairs``
    (one atom at least)."""
    counts = torch.bincount(center, minlength=n_atoms)
    cum = torch.cumsum(counts, 0).tolist()
    a0, p0 = 0, 0
    while a0 < n_atoms:
        a1 = max(a0 + 1, int(np.searchsorted(cum, p0 + max_pairs, side="right")))
        a1 = min(a1, n_atoms)
        p1 = cum[a1 - 1]
        yield a0, a1, p0, p1
        a0, p0 = a1, p1


def _group_records(descriptor, graphs: list[AtomicGraph], layout: BlockLayout, dtype, chunk_bytes: int):
    """Records (without labels) of one group of single-structure graphs. A record's ``J`` holds its pairs' rows
    block by block (all pairs of block 0 in pair order, then block 1, ...), so that a batch gathers each
    block's rows by slicing."""
    g = merge_graphs(graphs)
    pos, cell = g.positions.to(dtype), g.cell.to(dtype)
    vec = edge_vectors(pos, g.edge_index, g.shifts.to(dtype), cell, g.batch)
    n_atoms = int(g.species.shape[0])
    F = int(descriptor.n_features)
    itemsize = torch.empty((), dtype=dtype).element_size()
    max_pairs = max(1, chunk_bytes // (F * 3 * itemsize * 3))  # J, its blocked copy and temporaries
    G = torch.zeros(n_atoms, F, dtype=dtype)
    block = pair_blocks(g.species, g.edge_index, layout.n_elements)
    i = g.edge_index[0]
    pair_struct = g.batch.index_select(0, i)
    segments: dict = {}  # (structure, block) -> row pieces in pair order
    with torch.no_grad():
        for a0, a1, p0, p1 in _chunks(i, n_atoms, max_pairs):
            Gc, Jc = descriptor.jacobian(vec[p0:p1], g.species, g.edge_index[:, p0:p1])
            G[a0:a1] = Gc[a0:a1].to(dtype)
            for b, ps, rows in split_blocks(Jc.to(dtype), block[p0:p1], layout):
                fr = pair_struct.index_select(0, ps + p0)  # non-decreasing: a structure's rows are consecutive
                first = int(fr[0])
                counts = torch.bincount(fr - first).tolist()
                for s, piece in zip(range(first, first + len(counts)), rows.split(counts)):
                    if piece.shape[0]:
                        segments.setdefault((s, b), []).append(piece)
            del Jc
    pairs_per = torch.bincount(pair_struct, minlength=g.n_structures).tolist()
    atoms_per = g.n_atoms.tolist()
    out = []
    a = p = 0
    empty = torch.zeros(0, dtype=dtype)
    for s in range(g.n_structures):
        na, npr = atoms_per[s], pairs_per[s]
        parts = [torch.cat(segments.pop((s, b))).reshape(-1) for b in range(layout.n_blocks) if (s, b) in segments]
        out.append({"species": g.species[a : a + na], "G": G[a : a + na],
                    "edge_index": g.edge_index[:, p : p + npr] - a, "vec": vec[p : p + npr],
                    "J": torch.cat(parts) if parts else empty, "n_atoms": torch.tensor(na)})
        a, p = a + na, p + npr
    return out


def compute_records(descriptor, graphs, layout: BlockLayout, dtype=torch.float32, chunk_bytes: int = CHUNK_BYTES,
                    group_pairs: int = GROUP_PAIRS):
    """Records (without labels) of single-structure graphs, in their order: a generator that holds one group of
    frames at a time (see the module doc)."""
    group, n = [], 0
    for g in graphs:
        group.append(g)
        n += int(g.edge_index.shape[1])
        if n >= group_pairs:
            yield from _group_records(descriptor, group, layout, dtype, chunk_bytes)
            group, n = [], 0
    if group:
        yield from _group_records(descriptor, group, layout, dtype, chunk_bytes)


def with_labels(record: dict, graph: AtomicGraph, dtype) -> dict:
    """A record with the labels (and masks) and the cell volume of its single-structure graph."""
    out = dict(record)
    for name in LABEL_FIELDS:
        value, mask = getattr(graph, name), getattr(graph, name + "_mask")
        if name in ("energy", "stress"):
            value, mask = value[0], mask[0]
        out[name], out[name + "_mask"] = value.to(dtype), mask
    out["volume"] = torch.linalg.det(graph.cell[0].double()).abs().to(dtype)
    return out


def jacobian_records(descriptor, frames, elements, cutoff, dtype=torch.float32, layout: BlockLayout | None = None,
                     chunk_bytes: int = CHUNK_BYTES) -> list[dict]:
    """In-memory records of a list of ``ase.Atoms`` (tests, scripts and small studies)."""
    from mlpot.data.graph import atoms_to_graph

    layout = layout or probe_layout(descriptor)
    graphs = [atoms_to_graph([a], elements, cutoff, dtype=torch.float64) for a in frames]
    while True:
        try:
            recs = list(compute_records(descriptor, graphs, layout, dtype, chunk_bytes))
            break
        except LayoutError as exc:
            layout = layout.widen(exc.block, exc.columns)
    out = [with_labels(r, g, dtype) for r, g in zip(recs, graphs)]
    for r in out:
        r["layout"] = layout
    return out


def collate(records: list[dict], layout: BlockLayout | None = None) -> dict:
    """A batch for ``Potential.forward_cached`` from records (see :func:`collate_arrays`)."""
    layout = layout or records[0]["layout"]
    labels = {}
    for name in LABEL_FIELDS:
        stack = torch.stack if name in ("energy", "stress") else torch.cat
        labels[name] = stack([r[name] for r in records])
        labels[name + "_mask"] = stack([r[name + "_mask"] for r in records])
    return collate_arrays(
        layout, species=torch.cat([r["species"] for r in records]),
        n_atoms=torch.stack([r["n_atoms"] for r in records]),
        n_pairs=torch.tensor([r["edge_index"].shape[1] for r in records]),
        edge_index=torch.cat([r["edge_index"] for r in records], dim=1), vec=torch.cat([r["vec"] for r in records]),
        G=torch.cat([r["G"] for r in records]), values=torch.cat([r["J"] for r in records]),
        volume=torch.stack([r["volume"] for r in records]), labels=labels)


def collate_arrays(layout: BlockLayout, species, n_atoms, n_pairs, edge_index, vec, G, values, volume,
                   labels: dict) -> dict:
    """A batch for ``Potential.forward_cached`` from the concatenated arrays of its frames (``edge_index``
    frame-local, ``values`` each frame's blocked rows block by block): atom indices offset per frame, ``J`` a
    tuple of (P_b, width_b, 3), one per element block present, ``J_columns`` their columns (None: all),
    ``J_order`` the pairs the blocks hold in turn and ``J_inverse`` its inverse (both None for one block). The
    pair list itself stays sorted by centre atom, as descriptors and geometric heads expect."""
    B = int(n_atoms.shape[0])
    atom_off = torch.cumsum(n_atoms, 0) - n_atoms
    pair_batch = torch.repeat_interleave(torch.arange(B), n_pairs)
    edge_index = edge_index + atom_off.index_select(0, pair_batch)[None, :]
    block = pair_blocks(species, edge_index, layout.n_elements)
    widths = layout.widths()
    cols = layout.column_tensors()
    counts = torch.bincount(pair_batch * layout.n_blocks + block, minlength=B * layout.n_blocks)
    counts = counts.view(B, layout.n_blocks)
    present = torch.nonzero(counts.sum(0)).squeeze(1).tolist()
    order = inverse = None
    if len(present) == 1:  # one block: the rows are (P, width, 3) in pair order
        b = present[0]
        blocks, columns = (values.view(-1, len(layout.columns[b]), 3),), (cols[b],)
    else:
        sizes = (counts * widths * 3).reshape(-1).tolist()
        pieces = values.split(sizes)  # (frame, block) segments, frame by frame
        blocks = tuple(torch.cat([pieces[f * layout.n_blocks + b] for f in range(B)]).view(-1, len(layout.columns[b]), 3)
                       for b in present)
        columns = tuple(cols[b] for b in present)
        order = torch.argsort(block, stable=True)
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(order.shape[0])
    out = {"species": species, "edge_index": edge_index, "vec": vec, "G": G, "J": blocks, "J_columns": columns,
           "J_order": order, "J_inverse": inverse, "volume": volume, "n_atoms": n_atoms,
           "batch": torch.repeat_interleave(torch.arange(B), n_atoms), "pair_batch": pair_batch}
    out.update(labels)
    return out


def estimate_bytes(layout: BlockLayout, pair_counts: torch.Tensor, n_atoms: int, itemsize: int) -> float:
    """Stored bytes of J, G, pair vectors and edges, from the number of pairs per block (n_blocks,)."""
    j = float((pair_counts.to(torch.float64) * layout.bytes_per_pair(itemsize).to(torch.float64)).sum())
    pairs = float(pair_counts.sum())
    return j + n_atoms * layout.n_features * itemsize + pairs * (3 * itemsize + 8)


__all__ = ["BlockLayout", "LayoutError", "probe_layout", "split_blocks", "compute_records", "jacobian_records",
           "collate", "collate_arrays", "with_labels", "pair_blocks", "estimate_bytes", "CHUNK_BYTES"]
