"""Many structures as one flat graph: the input of every descriptor and model."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np
import torch
from ase import Atoms

from mlpot.data.frames import ATOMIC_ENERGIES, ENERGY, FORCES, STRESS, check_structure, get_label
from mlpot.data.neighbors import neighbor_list


@dataclass
class AtomicGraph:
    """A batch of structures.

    positions (n_atoms, 3); species (n_atoms,) index into the element list;
    cell (n_structures, 3, 3); pbc (n_structures, 3); edge_index (2, n_pairs)
    centre i and neighbour j, full list sorted by i; shifts (n_pairs, 3) integer
    cell shifts (r_ij = r_j - r_i + shifts @ cell); batch (n_atoms,) structure
    index; n_atoms (n_structures,). Labels (optional): energy (n_structures,),
    forces (n_atoms, 3), stress (n_structures, 3, 3), atomic_energies (n_atoms,)
    and their masks (True where the label exists).
    """

    positions: torch.Tensor
    species: torch.Tensor
    cell: torch.Tensor
    pbc: torch.Tensor
    edge_index: torch.Tensor
    shifts: torch.Tensor
    batch: torch.Tensor
    n_atoms: torch.Tensor
    energy: torch.Tensor | None = None
    forces: torch.Tensor | None = None
    stress: torch.Tensor | None = None
    atomic_energies: torch.Tensor | None = None
    energy_mask: torch.Tensor | None = None
    forces_mask: torch.Tensor | None = None
    stress_mask: torch.Tensor | None = None
    atomic_energies_mask: torch.Tensor | None = None

    @property
    def n_structures(self) -> int:
        return int(self.n_atoms.shape[0])

    def to(self, device=None, dtype=None) -> "AtomicGraph":
        """Move to ``device``; floating tensors are cast to ``dtype``."""
        out = {}
        for f in fields(self):
            t = getattr(self, f.name)
            if t is None:
                out[f.name] = None
            elif t.is_floating_point():
                out[f.name] = t.to(device=device, dtype=dtype)
            else:
                out[f.name] = t.to(device=device)
        return AtomicGraph(**out)

    def replace(self, **kw) -> "AtomicGraph":
        return replace(self, **kw)


def _label_and_mask(values, shape):
    mask = np.array([v is not None for v in values], dtype=bool)
    filled = [np.zeros(shape(k)) if v is None else np.asarray(v, dtype=np.float64) for k, v in enumerate(values)]
    return filled, mask


def atoms_to_graph(
    frames: list[Atoms] | Atoms,
    elements: list[str],
    cutoff: float,
    dtype: torch.dtype = torch.float64,
    with_labels: bool = True,
) -> AtomicGraph:
    """Build one flat graph from a list of frames (neighbour lists from vesin)."""
    if isinstance(frames, Atoms):
        frames = [frames]
    index = {el: k for k, el in enumerate(elements)}
    pos, spec, cells, pbcs, ei, ej, shifts, batch, counts = [], [], [], [], [], [], [], [], []
    offset = 0
    for s, atoms in enumerate(frames):
        source, frame = atoms.info.get("mlpot_source"), atoms.info.get("mlpot_frame", s if len(frames) > 1 else None)
        check_structure(atoms, source, frame, elements)
        i, j, sh = neighbor_list(atoms.positions, atoms.cell.array, atoms.pbc, cutoff, source, frame)
        pos.append(atoms.positions)
        spec.append([index[z] for z in atoms.get_chemical_symbols()])
        cells.append(atoms.cell.array)
        pbcs.append(atoms.pbc)
        ei.append(i + offset)
        ej.append(j + offset)
        shifts.append(sh)
        batch.append(np.full(len(atoms), s))
        counts.append(len(atoms))
        offset += len(atoms)
    f = lambda x: torch.as_tensor(np.asarray(x), dtype=dtype)  # noqa: E731
    g = lambda x: torch.as_tensor(np.asarray(x), dtype=torch.long)  # noqa: E731
    graph = AtomicGraph(
        positions=f(np.concatenate(pos)).reshape(-1, 3),
        species=g(np.concatenate(spec)),
        cell=f(np.stack(cells)),
        pbc=torch.as_tensor(np.stack(pbcs)),
        edge_index=g(np.stack([np.concatenate(ei), np.concatenate(ej)])),
        shifts=f(np.concatenate(shifts)).reshape(-1, 3),
        batch=g(np.concatenate(batch)),
        n_atoms=g(counts),
    )
    if not with_labels:
        return graph
    labels = {}
    e, m = _label_and_mask([get_label(a, ENERGY) for a in frames], lambda k: ())
    labels.update(energy=f(e), energy_mask=torch.as_tensor(m))
    st, m = _label_and_mask([get_label(a, STRESS) for a in frames], lambda k: (3, 3))
    labels.update(stress=f(np.stack(st)), stress_mask=torch.as_tensor(m))
    for name, shape in ((FORCES, lambda k: (len(frames[k]), 3)), (ATOMIC_ENERGIES, lambda k: (len(frames[k]),))):
        vals, m = _label_and_mask([get_label(a, name) for a in frames], shape)
        labels[name] = f(np.concatenate(vals))
        labels[name + "_mask"] = torch.as_tensor(np.repeat(m, counts))
    return graph.replace(**labels)


def graph_from_arrays(positions, species, cell, pbc, cutoff: float, dtype: torch.dtype = torch.float64,
                      labels: dict | None = None, source: str | None = None, frame: int | None = None) -> AtomicGraph:
    """One structure's graph from arrays (species as indices into the element list); ``labels``: a dict
    with ``energy``, ``forces``, ``stress``, ``atomic_energies`` (None where the frame has no such label)."""
    positions = np.asarray(positions, dtype=np.float64)
    cell = np.asarray(cell, dtype=np.float64).reshape(3, 3)
    i, j, sh = neighbor_list(positions, cell, pbc, cutoff, source, frame)
    n = len(positions)
    f = lambda x: torch.as_tensor(np.asarray(x), dtype=dtype)  # noqa: E731
    graph = AtomicGraph(
        positions=f(positions), species=torch.as_tensor(np.asarray(species), dtype=torch.long),
        cell=f(cell[None]), pbc=torch.as_tensor(np.asarray(pbc, dtype=bool)).reshape(1, 3),
        edge_index=torch.as_tensor(np.stack([i, j]), dtype=torch.long), shifts=f(sh).reshape(-1, 3),
        batch=torch.zeros(n, dtype=torch.long), n_atoms=torch.tensor([n]),
    )
    if labels is None:
        return graph
    out = {}
    for name, shape in ((ENERGY, ()), (STRESS, (3, 3)), (FORCES, (n, 3)), (ATOMIC_ENERGIES, (n,))):
        value = labels.get(name)
        have = value is not None
        tensor = f(np.zeros(shape) if not have else np.asarray(value, dtype=np.float64).reshape(shape))
        if name in (ENERGY, STRESS):
            out[name], out[name + "_mask"] = tensor[None], torch.tensor([have])
        else:
            out[name], out[name + "_mask"] = tensor, torch.full((n,), have)
    return graph.replace(**out)


def merge_graphs(graphs: list[AtomicGraph]) -> AtomicGraph:
    """One flat graph (a batch) from several: atoms, pairs and structures concatenated."""
    counts = torch.cat([g.n_atoms for g in graphs])
    atom_off = torch.cumsum(counts, 0) - counts
    struct_off = 0
    edge_index, batch = [], []
    k = 0
    for g in graphs:
        n_s = g.n_structures
        first_atom = atom_off[k]
        edge_index.append(g.edge_index + first_atom)
        batch.append(g.batch + struct_off)
        struct_off += n_s
        k += n_s
    out = {"edge_index": torch.cat(edge_index, 1), "batch": torch.cat(batch), "n_atoms": counts}
    for fld in fields(AtomicGraph):
        if fld.name in out:
            continue
        values = [getattr(g, fld.name) for g in graphs]
        out[fld.name] = None if any(v is None for v in values) else torch.cat(values)
    return AtomicGraph(**out)
