"""Committee: K potentials that share one descriptor, evaluated in one call (mean and spread).

A committee (query by committee, as in MACE/NequIP ensembles) is K models trained from different seeds and/or
splits. Here the members share the descriptor (same class, configuration and state: what training with other
seeds gives) and differ in their scaling statistics and heads (weights, and even layer sizes or head class).
The descriptors and their graph are computed once; each head runs on them, and the forces of each member come
from its own backward pass. :meth:`Committee.forward_edges` returns what :meth:`Potential.forward_edges` does,
with the committee **mean** under the usual keys, and the members' values under ``"members"``:

    out["energy"], out["atomic_energies"], out["forces"], out["stress"]    mean over the members
    out["members"]["energy"] (K, S), ["atomic_energies"] (K, n), ["forces"] (K, n, 3), ["stress"] (K, S, 3, 3)

:func:`spread` turns the members' values into the standard deviations that the calculator reports (population
standard deviation, ddof=0): ``energy_std`` (eV, of the total energy), ``energies_std`` (eV, per atom, of the
atomic energies) and ``forces_std`` (eV/Å, per atom: the norm of the three per-component standard deviations).
"""

from __future__ import annotations

import torch
from torch import nn

from mlpot.descriptors.geometry import edge_vectors
from mlpot.errors import MLPotError
from mlpot.models.potential import _safe_volume
from mlpot.ops import scatter_sum


#: the ASE results a committee adds (see :func:`spread`)
SPREAD_KEYS = ("energy_std", "energies_std", "forces_std", "max_force_std", "mean_force_std")


class CommitteeError(MLPotError, ValueError):
    """Members that cannot form a committee (other elements, cutoff, descriptor or dtype)."""


def _same_state(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(sa[k].shape == sb[k].shape and torch.equal(sa[k].cpu(), sb[k].cpu().to(sa[k].dtype))
                                          for k in sa)


def check_members(members, names=None) -> None:
    """CommitteeError naming the first member that does not fit member 0 (elements, cutoff, descriptor, dtype)."""
    names = list(names) if names is not None else [f"member {k}" for k in range(len(members))]
    if len(members) < 2:
        raise CommitteeError(f"a committee needs at least 2 members, got {len(members)}")
    ref = members[0]
    ref_config = ref.descriptor.config() if callable(getattr(ref.descriptor, "config", None)) else None
    for m, name in zip(members[1:], names[1:]):
        if list(m.elements) != list(ref.elements):
            raise CommitteeError(f"{name}: elements {list(m.elements)} differ from {names[0]}'s {list(ref.elements)}")
        if abs(m.cutoff - ref.cutoff) > 1e-12:
            raise CommitteeError(f"{name}: cutoff {m.cutoff} Å differs from {names[0]}'s {ref.cutoff} Å")
        config = m.descriptor.config() if callable(getattr(m.descriptor, "config", None)) else None
        if type(m.descriptor) is not type(ref.descriptor) or config != ref_config or not _same_state(m.descriptor,
                                                                                                       ref.descriptor):
            raise CommitteeError(f"{name}: its {type(m.descriptor).__name__} descriptor differs from {names[0]}'s "
                                 f"{type(ref.descriptor).__name__} (committee members must share the descriptor)")
        if m.dtype != ref.dtype:
            raise CommitteeError(f"{name}: dtype {m.dtype} differs from {names[0]}'s {ref.dtype}")


class Committee(nn.Module):
    """K :class:`Potential` members with one shared descriptor; used wherever a Potential is (calculator, MD,
    evaluation, deployment), giving the mean, plus the members' values under ``"members"``.

    ``members``: Potentials with the same elements, cutoff, descriptor (class, config and state) and dtype
    (:func:`check_members`); the committee keeps member 0's descriptor and shares it with all members."""

    def __init__(self, members, metadata=None, names=None):
        super().__init__()
        members = list(members)
        check_members(members, names)
        shared = members[0].descriptor
        for m in members[1:]:
            m.descriptor = shared
        self.members = nn.ModuleList(members)
        self.metadata = dict(metadata or {})
        self._batched = True  # one batched backward through the descriptor (False after it failed once)

    # -- what a Potential offers -------------------------------------------------------------------
    @property
    def size(self) -> int:
        return len(self.members)

    @property
    def elements(self) -> list[str]:
        return list(self.members[0].elements)

    @property
    def descriptor(self) -> nn.Module:
        return self.members[0].descriptor

    @property
    def cutoff(self) -> float:
        return self.members[0].cutoff

    @property
    def dtype(self) -> torch.dtype:
        return self.members[0].dtype

    @property
    def device(self) -> torch.device:
        return self.members[0].device

    @property
    def scaler(self) -> "_AnyScaler":
        """The extrapolation monitor's view of the members' scalers: an atom is out of range when it is for any."""
        return _AnyScaler([m.scaler for m in self.members])

    def features(self, graph, positions=None, cell=None) -> torch.Tensor:
        return self.members[0].features(graph, positions, cell)

    def local_energies(self, vec, species, edge_index, plan: dict | None = None) -> torch.Tensor:
        """The mean of the members' atomic energies (what a deployed committee computes)."""
        G = self.members[0]._descriptors(vec, species, edge_index, plan)
        atomic = [m._atomic(G, species, vec, edge_index, False)[0] for m in self.members]
        return torch.stack(atomic).mean(0)

    def forward(self, graph, forces: bool = True, stress: bool = False, create_graph: bool = False,
                with_delta: bool = False) -> dict:
        vec = edge_vectors(graph.positions, graph.edge_index, graph.shifts, graph.cell, graph.batch)
        return self.forward_edges(vec, graph.species, graph.edge_index, graph.batch, graph.n_structures,
                                  _safe_volume(graph.cell) if stress else None, forces, stress, create_graph)

    def forward_edges(self, vec, species, edge_index, batch, n_structures: int, volume=None, forces: bool = True,
                      stress: bool = False, create_graph: bool = False, with_delta: bool = False,
                      plan: dict | None = None) -> dict:
        """:meth:`Potential.forward_edges` of every member on one descriptor call: the means under the usual keys,
        the members' values (stacked, member first) under ``"members"``."""
        from mlpot.models.potential import forces_and_virial

        need = forces or stress
        if need:
            vec = vec.detach().requires_grad_(True)
        G = self.members[0]._descriptors(vec, species, edge_index, plan)
        batched = need and not create_graph and self._batched and not any(
            getattr(m.head, "needs_geometry", False) for m in self.members)
        Gh = G.detach().requires_grad_(True) if batched else G  # batched: the heads on a cut of the graph at G
        atomic = torch.stack([m._atomic(Gh, species, vec, edge_index, False)[0] for m in self.members])  # (K, n)
        energy = torch.stack([scatter_sum(a, batch, n_structures) for a in atomic])  # (K, S)
        per = {"energy": energy.detach() if batched else energy, "atomic_energies": atomic.detach() if batched else atomic}
        if need:
            if batched:
                c = self._pair_gradients(vec, G, Gh, energy)
                if c is None:  # the descriptor's backward cannot be batched: again, member by member (from now on)
                    return self.forward_edges(vec, species, edge_index, batch, n_structures, volume, forces, stress,
                                              create_graph, with_delta, plan)
            else:  # members one by one through the whole graph (heads on the geometry, training on forces)
                c = torch.stack([self._grad(energy[k], vec, create_graph, create_graph or k < self.size - 1)
                                 for k in range(self.size)])
            pair_batch = batch.index_select(0, edge_index[0])
            fw = [forces_and_virial(c[k], vec, edge_index, batch.shape[0], pair_batch, n_structures, forces, stress)
                  for k in range(self.size)]
            if forces:
                per["forces"] = torch.stack([f for f, _ in fw])
            if stress:
                per["stress"] = torch.stack([w for _, w in fw]) / volume[None, :, None, None]
        out = {k: v.mean(0) for k, v in per.items()}
        out["descriptors"] = G
        out["members"] = per
        return out

    @staticmethod
    def _grad(energy, vec, create_graph: bool, retain_graph: bool) -> torch.Tensor:
        (c,) = torch.autograd.grad(energy.sum(), vec, create_graph=create_graph, retain_graph=retain_graph,
                                   allow_unused=True)
        return torch.zeros_like(vec) if c is None else c

    def _pair_gradients(self, vec, G, Gh, energy):
        """c_k = ∂E_k/∂r_p (K, P, 3) with one backward pass through the descriptor: each head's ∂E_k/∂G (cheap),
        then the descriptor's vector-Jacobian product for all K at once (``is_grads_batched``, 1.6x faster than K
        passes for K=4, 256 Cu atoms). None when the descriptor's backward cannot be batched (then never again)."""
        dEdG = torch.stack([self._grad(energy[k], Gh, False, k < self.size - 1) for k in range(self.size)])
        if not G.requires_grad:  # a descriptor that does not depend on the positions (no pairs)
            return torch.zeros((self.size, *vec.shape), dtype=vec.dtype, device=vec.device)
        try:
            (c,) = torch.autograd.grad(G, vec, grad_outputs=dEdG, is_grads_batched=True, allow_unused=True)
        except Exception:  # noqa: BLE001 - an op without a batching rule: K backward passes from now on
            self._batched = False
            return None
        return torch.zeros((self.size, *vec.shape), dtype=vec.dtype, device=vec.device) if c is None else c

    def predict(self, atoms, forces: bool = True, stress: bool = False) -> dict:
        """Evaluate one ``ase.Atoms`` or a list; tensors are detached (``"members"`` too)."""
        from mlpot.data.graph import atoms_to_graph

        graph = atoms_to_graph(atoms, self.elements, self.cutoff, dtype=self.dtype, with_labels=False).to(self.device)
        out = self(graph, forces=forces, stress=stress)
        members = {k: v.detach() for k, v in out.pop("members").items()}
        return {**{k: v.detach() for k, v in out.items()}, "members": members}


class _AnyScaler:
    """``out_of_range`` over several scalers (True where any member's training range is left)."""

    def __init__(self, scalers):
        self.scalers = scalers

    @property
    def a(self) -> torch.Tensor:
        return self.scalers[0].a

    def out_of_range(self, G, species, tol: float = 0.0) -> torch.Tensor:
        out = self.scalers[0].out_of_range(G, species, tol)
        for s in self.scalers[1:]:
            out = out | s.out_of_range(G, species, tol)
        return out


def spread(members: dict) -> dict:
    """Standard deviations over the members (ddof=0) of one structure's values, as float64 numpy arrays:
    ``energy_std`` (float, eV), ``energies_std`` (n,) eV, ``forces_std`` (n,) eV/Å = |per-component std|,
    and ``max_force_std``/``mean_force_std`` (floats, eV/Å; 0 for no atoms)."""
    import numpy as np

    out = {}
    e = np.asarray(members["energy"].detach().cpu().double().numpy()).reshape(len(members["energy"]), -1)
    out["energy_std"] = float(e[:, 0].std())
    out["energies_std"] = members["atomic_energies"].detach().cpu().double().numpy().std(0)
    if "forces" in members:
        f = members["forces"].detach().cpu().double().numpy()
        fstd = np.linalg.norm(f.std(0), axis=-1)
        out["forces_std"] = fstd
        out["max_force_std"] = float(fstd.max()) if len(fstd) else 0.0
        out["mean_force_std"] = float(fstd.mean()) if len(fstd) else 0.0
    return out


__all__ = ["Committee", "CommitteeError", "SPREAD_KEYS", "check_members", "spread"]
