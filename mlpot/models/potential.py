"""Potential: descriptor → scaling → head, with energy, atomic energies, forces and stress."""

from __future__ import annotations

import torch
from torch import nn

from mlpot.data.graph import AtomicGraph, atoms_to_graph
from mlpot.descriptors.geometry import edge_vectors
from mlpot.descriptors.scaling import FeatureScaler


class Potential(nn.Module):
    """An interatomic potential over flat graphs.

    ``forward(graph)`` returns a dict with ``energy`` (n_structures,),
    ``atomic_energies`` (n_atoms,), and on request ``forces`` (n_atoms, 3) = −∂E/∂r
    and ``stress`` (n_structures, 3, 3) = (1/V) ∂E/∂ε (ASE sign convention).
    Use ``potential.to(dtype)`` for float32/float64 and ``.to(device)`` for CUDA.
    """

    def __init__(self, elements, descriptor: nn.Module, head: nn.Module, scaler: FeatureScaler | None = None, metadata=None):
        super().__init__()
        self.elements = list(elements)
        self.descriptor = descriptor
        self.scaler = scaler or FeatureScaler(len(self.elements), descriptor.n_features)
        self.head = head
        head_cutoff = getattr(head, "cutoff", None)  # heads on the geometry (PINN) use the descriptor's neighbour list
        if head_cutoff is not None and float(head_cutoff) > float(descriptor.cutoff) + 1e-12:
            raise ValueError(f"head cutoff {head_cutoff} exceeds the descriptor cutoff {descriptor.cutoff}")
        self.metadata = dict(metadata or {})

    @property
    def cutoff(self) -> float:
        return float(self.descriptor.cutoff)

    @property
    def dtype(self) -> torch.dtype:
        return self.scaler.a.dtype

    @property
    def device(self) -> torch.device:
        return self.scaler.a.device

    def features(self, graph: AtomicGraph, positions=None, cell=None) -> torch.Tensor:
        """Unscaled descriptors (n_atoms, n_features)."""
        positions = graph.positions if positions is None else positions
        cell = graph.cell if cell is None else cell
        return self.descriptor(positions, graph.species, graph.edge_index, graph.shifts, cell, graph.batch)

    def forward(self, graph: AtomicGraph, forces: bool = True, stress: bool = False, create_graph: bool = False) -> dict:
        positions, cell = graph.positions, graph.cell
        inputs = []
        if forces:
            positions = positions.detach().requires_grad_(True)
            inputs.append(positions)
        if stress:
            strain = torch.zeros_like(cell).requires_grad_(True)
            inputs.append(strain)
            deform = torch.eye(3, dtype=cell.dtype, device=cell.device) + strain
            positions = torch.einsum("nk,nkl->nl", positions, deform[graph.batch])
            cell = torch.bmm(cell, deform)
        G = self.features(graph, positions, cell)
        if getattr(self.head, "needs_geometry", False):  # e.g. the PINN head: also gets the pair vectors r_ij
            vec = edge_vectors(positions, graph.edge_index, graph.shifts, cell, graph.batch)
            atomic = self.head(self.scaler(G, graph.species), graph.species, vec=vec, edge_index=graph.edge_index)
        else:
            atomic = self.head(self.scaler(G, graph.species), graph.species)
        energy = torch.zeros(graph.n_structures, dtype=atomic.dtype, device=atomic.device).index_add(0, graph.batch, atomic)
        out = {"energy": energy, "atomic_energies": atomic, "descriptors": G}
        if inputs:
            grads = torch.autograd.grad(energy.sum(), inputs, create_graph=create_graph, allow_unused=True)
            grads = [torch.zeros_like(x) if g is None else g for g, x in zip(grads, inputs)]
            if forces:
                out["forces"] = -grads[0]
            if stress:
                volume = torch.linalg.det(graph.cell).abs()
                volume = torch.where(volume > 0, volume, torch.ones_like(volume))
                out["stress"] = grads[-1] / volume[:, None, None]
        return out

    def predict(self, atoms, forces: bool = True, stress: bool = False) -> dict:
        """Convenience: evaluate one ``ase.Atoms`` or a list; tensors are detached."""
        graph = atoms_to_graph(atoms, self.elements, self.cutoff, dtype=self.dtype, with_labels=False).to(self.device)
        return {k: v.detach() for k, v in self(graph, forces=forces, stress=stress).items()}
