"""Potential: descriptor → scaling → head, with energy, atomic energies, forces and stress.

Forces and stress have two sources that end in one function. The energy depends on positions and cell
only through the pair vectors r_p = r_j − r_i + S_p · cell, so everything follows from the pair gradients
c_p = ∂E/∂r_p (:func:`forces_and_virial`):

    F_m = Σ_{p: i(p)=m} c_p − Σ_{p: j(p)=m} c_p,        W = Σ_p r_p ⊗ c_p,   σ = W / V   (ASE sign).

* :meth:`Potential.forward` (the *autograd* path, for any graph): c_p by autograd through the descriptor;
  with ``create_graph`` the forces stay differentiable in the weights (training on the fly).
* :meth:`Potential.forward_cached` (the *cached-Jacobian* path, for training batches with stored
  descriptors G and pair Jacobians J_p = ∂G_i(p)/∂r_p, see ``mlpot.data.jacobians``): c_p = J_p^T ∂E/∂G_i(p),
  with J stored in element blocks (only the feature columns a pair of that element combination can touch).

Both give the same energies, forces, stress and loss gradients (tested to 1e-10 in float64).
"""

from __future__ import annotations

import torch
from torch import nn

from mlpot.data.graph import AtomicGraph, atoms_to_graph
from mlpot.descriptors.geometry import edge_vectors
from mlpot.descriptors.scaling import FeatureScaler
from mlpot.ops import scatter_sum


def forces_and_virial(c: torch.Tensor, vec: torch.Tensor, edge_index: torch.Tensor, n_atoms: int,
                      pair_batch: torch.Tensor | None, n_structures: int, forces: bool = True,
                      virial: bool = True) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Forces (n_atoms, 3) and virials (n_structures, 3, 3) from the pair gradients c_p = ∂E/∂r_p (P, 3).

    F_m = Σ_{p: i(p)=m} c_p − Σ_{p: j(p)=m} c_p and W_s = Σ_{p ∈ s} r_p ⊗ c_p, so that the stress
    (1/V) ∂E/∂ε (ASE sign) is W / V. ``pair_batch`` gives each pair's structure."""
    i, j = edge_index
    f = w = None
    if forces:
        f = scatter_sum(c, i, n_atoms) - scatter_sum(c, j, n_atoms)
    if virial:
        w = scatter_sum((vec[:, :, None] * c[:, None, :]).reshape(-1, 9), pair_batch, n_structures).view(-1, 3, 3)
    return f, w


def contract_pair_jacobian(dEdG: torch.Tensor, center: torch.Tensor, blocks, columns, order=None,
                           inverse=None) -> torch.Tensor:
    """c_p = J_p^T ∂E/∂G_i(p) for pairs stored block by block (``mlpot.data.jacobians``).

    ``blocks``: per element block, J of its pairs (P_b, n_b, 3); ``columns``: per block, the feature columns
    (n_b,) that J holds (None: all). The blocks' pairs are the pair list taken in ``order`` (None: in pair
    order), and ``inverse`` puts the result back in pair order."""
    if order is not None:
        center = center.index_select(0, order)
    parts, start = [], 0
    for J, cols in zip(blocks, columns):
        n = J.shape[0]
        g = dEdG.index_select(0, center[start : start + n])
        if cols is not None:
            g = g.index_select(1, cols)
        parts.append(torch.bmm(g.unsqueeze(1), J).squeeze(1))
        start += n
    if not parts:
        return dEdG.new_zeros(0, 3)
    c = torch.cat(parts)
    return c if inverse is None else c.index_select(0, inverse)


def _safe_volume(cell: torch.Tensor) -> torch.Tensor:
    volume = torch.linalg.det(cell).abs()
    return torch.where(volume > 0, volume, torch.ones_like(volume))


GRAPH_KEYS = ("positions", "species", "cell", "pbc", "edge_index", "shifts", "batch", "n_atoms")


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

    # -- the head, shared by both paths -------------------------------------------------------------
    def _atomic(self, G, species, vec, edge_index, with_delta: bool):
        """Atomic energies (and the head's δ and penalty where it has them) from unscaled descriptors."""
        x = self.scaler(G, species)
        if not getattr(self.head, "needs_geometry", False):
            return self.head(x, species), None
        if with_delta and callable(getattr(self.head, "penalty", None)):  # PINN: per-atom corrections δp
            return self.head(x, species, vec=vec, edge_index=edge_index, return_delta=True)
        return self.head(x, species, vec=vec, edge_index=edge_index), None

    def _finish(self, out, c, vec, edge_index, atom_batch, pair_batch, n_structures, cell_volume, forces, stress):
        f, w = forces_and_virial(c, vec, edge_index, atom_batch.shape[0], pair_batch, n_structures, forces, stress)
        if forces:
            out["forces"] = f
        if stress:
            out["stress"] = w / cell_volume[:, None, None]
        return out

    def local_energies(self, vec: torch.Tensor, species: torch.Tensor, edge_index: torch.Tensor,
                       plan: dict | None = None) -> torch.Tensor:
        """Atomic energies E_i (n_atoms,) from the pair vectors r_ij of a full list sorted by centre i: what a
        deployed model computes (``mlpot.deploy``); atoms that centre no pair are only neighbours. ``plan``: the
        descriptor's index work where it takes one (``ACSF``)."""
        atomic, _ = self._atomic(self._descriptors(vec, species, edge_index, plan), species, vec, edge_index, False)
        return atomic

    def _descriptors(self, vec, species, edge_index, plan: dict | None = None) -> torch.Tensor:
        """Unscaled descriptors from the pair vectors, with the descriptor's precomputed plan where given."""
        if plan is None:
            return self.descriptor.from_edges(vec, species, edge_index)
        return self.descriptor.from_edges(vec, species, edge_index, plan=plan)

    # -- the autograd path --------------------------------------------------------------------------
    def forward(self, graph: AtomicGraph, forces: bool = True, stress: bool = False, create_graph: bool = False,
                with_delta: bool = False) -> dict:
        vec = edge_vectors(graph.positions, graph.edge_index, graph.shifts, graph.cell, graph.batch)
        return self.forward_edges(vec, graph.species, graph.edge_index, graph.batch, graph.n_structures,
                                  _safe_volume(graph.cell) if stress else None, forces, stress, create_graph,
                                  with_delta)

    def forward_edges(self, vec, species, edge_index, batch, n_structures: int, volume=None, forces: bool = True,
                      stress: bool = False, create_graph: bool = False, with_delta: bool = False,
                      plan: dict | None = None) -> dict:
        """:meth:`forward` from the pair vectors r_ij (P, 3) instead of positions: the same outputs; ``volume``
        (n_structures,) is needed for the stress. ``plan``: the descriptor's precomputed index work
        (``descriptor.edge_plan``, where it has one), so that a compiled caller can keep it outside."""
        need = forces or stress
        if need:
            vec = vec.detach().requires_grad_(True)
        G = self._descriptors(vec, species, edge_index, plan)
        atomic, delta = self._atomic(G, species, vec, edge_index, with_delta)
        energy = scatter_sum(atomic, batch, n_structures)
        out = {"energy": energy, "atomic_energies": atomic, "descriptors": G}
        if delta is not None:
            out["delta"], out["penalty"] = delta, self.head.penalty(delta)
        if need:
            (c,) = torch.autograd.grad(energy.sum(), vec, create_graph=create_graph, allow_unused=True)
            c = torch.zeros_like(vec) if c is None else c
            pair_batch = batch.index_select(0, edge_index[0])
            self._finish(out, c, vec, edge_index, batch, pair_batch, n_structures, volume, forces, stress)
        return out

    # -- the cached-Jacobian path -------------------------------------------------------------------
    def forward_cached(self, batch: dict, forces: bool = True, stress: bool = False, create_graph: bool = False,
                       with_delta: bool = False) -> dict:
        """Energy, atomic energies, forces and stress of a batch of stored descriptors and pair Jacobians
        (keys ``G``, ``J``, ``J_columns``, ``species``, ``edge_index``, ``vec``, ``volume``, ``batch``,
        ``pair_batch``, ``n_atoms``; see ``mlpot.data.jacobians``)."""
        G, vec, species, edge_index = batch["G"], batch["vec"], batch["species"], batch["edge_index"]
        need = forces or stress
        geometry = getattr(self.head, "needs_geometry", False)
        if need:
            G = G.detach().requires_grad_(True)
            if geometry:
                vec = vec.detach().requires_grad_(True)
        atomic, delta = self._atomic(G, species, vec, edge_index, with_delta)
        n_struct = int(batch["n_atoms"].shape[0])
        energy = scatter_sum(atomic, batch["batch"], n_struct)
        out = {"energy": energy, "atomic_energies": atomic}
        if delta is not None:
            out["delta"], out["penalty"] = delta, self.head.penalty(delta)
        if need:
            inputs = (G, vec) if geometry else (G,)
            grads = torch.autograd.grad(atomic.sum(), inputs, create_graph=create_graph, allow_unused=True)
            dEdG = grads[0]
            c = torch.zeros_like(vec) if not geometry or grads[1] is None else grads[1]
            if dEdG is not None:
                c = c + contract_pair_jacobian(dEdG, edge_index[0], batch["J"], batch["J_columns"],
                                               batch.get("J_order"), batch.get("J_inverse"))
            volume = batch["volume"]
            volume = torch.where(volume > 0, volume, torch.ones_like(volume))
            self._finish(out, c, batch["vec"], edge_index, batch["batch"], batch["pair_batch"], n_struct, volume,
                         forces, stress)
        return out

    # -- batches of either kind ---------------------------------------------------------------------
    def predict_batch(self, batch: dict, forces: bool = True, stress: bool = False, create_graph: bool = False,
                      with_delta: bool = False) -> dict:
        """A training batch (dict) of either kind: with ``J``, the cached-Jacobian path, else the autograd
        path on the batch's graph (``mlpot.data.datasets``)."""
        if "J" in batch:
            return self.forward_cached(batch, forces, stress, create_graph, with_delta)
        graph = AtomicGraph(**{k: batch[k] for k in GRAPH_KEYS})
        return self(graph, forces=forces, stress=stress, create_graph=create_graph, with_delta=with_delta)

    def predict(self, atoms, forces: bool = True, stress: bool = False) -> dict:
        """Convenience: evaluate one ``ase.Atoms`` or a list; tensors are detached."""
        graph = atoms_to_graph(atoms, self.elements, self.cutoff, dtype=self.dtype, with_labels=False).to(self.device)
        return {k: v.detach() for k, v in self(graph, forces=forces, stress=stress).items()}
