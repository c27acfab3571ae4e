"""Precomputed descriptors and their pair Jacobians, the training set's working form.

Positions are fixed during training, so (as n2p2 does) each frame's descriptors
G (n_atoms, F) and J (n_pairs, F, 3) = ∂G_i/∂r_ij are computed once. A training
step is then only the networks plus a contraction:

    c_p = J_p^T ∂E/∂G_i(p)                      (per pair, 3-vector)
    F_m = Σ_{p: i(p)=m} c_p − Σ_{p: j(p)=m} c_p
    σ   = (1/V) Σ_p r_p ⊗ c_p                   (ASE sign)

which equals ``Potential.forward`` (tested) at a fraction of the cost.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from mlpot.data.frames import get_label
from mlpot.data.graph import atoms_to_graph
from mlpot.descriptors.geometry import edge_vectors

LABEL_FIELDS = ("energy", "forces", "stress", "atomic_energies")
CACHE_VERSION = 1  # of the records' layout; stored descriptor caches of another version are not reused


def precompute(descriptor, frames, elements, cutoff, dtype=torch.float32, chunk: int = 8, device="cpu") -> list[dict]:
    """One record (dict of tensors) per frame: species, edges, G, J, pair vectors, volume, labels."""
    records = []
    for start in range(0, len(frames), chunk):
        part = frames[start : start + chunk]
        g = atoms_to_graph(part, elements, cutoff, dtype=dtype).to(device)
        vec = edge_vectors(g.positions, g.edge_index, g.shifts, g.cell, g.batch)
        with torch.no_grad():
            G, J = descriptor.to(device).jacobian(vec, g.species, g.edge_index)
        atom_off = torch.cumsum(g.n_atoms, 0) - g.n_atoms
        pair_struct = g.batch[g.edge_index[0]]
        volume = torch.linalg.det(g.cell).abs()
        for s in range(g.n_structures):
            a = slice(int(atom_off[s]), int(atom_off[s] + g.n_atoms[s]))
            pmask = pair_struct == s
            rec = {
                "species": g.species[a].cpu(),
                "edge_index": (g.edge_index[:, pmask] - atom_off[s]).cpu(),
                "G": G[a].to(dtype).cpu(),
                "J": J[pmask].to(dtype).cpu(),
                "vec": vec[pmask].to(dtype).cpu(),
                "volume": volume[s].to(dtype).cpu(),
                "n_atoms": g.n_atoms[s].cpu(),
            }
            for name in LABEL_FIELDS:
                value, mask = getattr(g, name), getattr(g, name + "_mask")
                rec[name] = (value[s] if name in ("energy", "stress") else value[a]).to(dtype).cpu()
                rec[name + "_mask"] = (mask[s] if name in ("energy", "stress") else mask[a]).cpu()
            records.append(rec)
    return records


def frame_key(atoms) -> str:
    """A fingerprint of one frame: species, positions, cell, periodicity and its labels."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(atoms.numbers, dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(atoms.positions, dtype=np.float64).tobytes())
    h.update(np.ascontiguousarray(atoms.cell.array, dtype=np.float64).tobytes())
    h.update(np.asarray(atoms.pbc, dtype=bool).tobytes())
    for name in LABEL_FIELDS:
        value = get_label(atoms, name)
        h.update(name.encode() + (b"-" if value is None else np.ascontiguousarray(value, dtype=np.float64).tobytes()))
    return h.hexdigest()


def descriptor_key(descriptor, elements, cutoff, dtype) -> str:
    """A fingerprint of what the cached records depend on besides the frame."""
    spec = {"class": f"{type(descriptor).__module__}.{type(descriptor).__qualname__}", "config": descriptor.config(),
            "elements": list(elements), "cutoff": float(cutoff), "dtype": str(dtype), "version": CACHE_VERSION}
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:20]


def precompute_stored(descriptor, frames, elements, cutoff, dtype, cache_dir) -> list[dict]:
    """``precompute`` with a store on disk: ``<cache_dir>/<descriptor key>.pt`` maps frame fingerprints to
    records, so that runs differing only in seed, split, model or optimiser (a sweep) compute each
    frame's descriptors and Jacobians once. Frames not in the store are computed and the store is
    rewritten atomically (a temporary file, then a rename), so an interrupted run never leaves a
    truncated store behind."""
    path = Path(cache_dir) / f"{descriptor_key(descriptor, elements, cutoff, dtype)}.pt"
    store = {}
    if path.exists():
        try:
            store = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # unreadable store: recompute and replace it
            warnings.warn(f"{path}: unreadable descriptor cache ({type(e).__name__}); recomputing it")
    keys = [frame_key(a) for a in frames]
    missing = sorted({k: i for i, k in enumerate(keys) if k not in store}.values())
    if missing:
        new = precompute(descriptor, [frames[i] for i in missing], elements, cutoff, dtype=dtype)
        store.update({keys[i]: rec for i, rec in zip(missing, new)})
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        torch.save(store, tmp)
        os.replace(tmp, path)
    return [store[k] for k in keys]


def collate(records: list[dict]) -> dict:
    """Concatenate records into one flat batch (atoms, pairs and structures)."""
    n_atoms = torch.stack([r["n_atoms"] for r in records])
    atom_off = torch.cumsum(n_atoms, 0) - n_atoms
    n_pairs = torch.tensor([r["edge_index"].shape[1] for r in records])
    out = {
        "species": torch.cat([r["species"] for r in records]),
        "edge_index": torch.cat([r["edge_index"] + off for r, off in zip(records, atom_off)], dim=1),
        "G": torch.cat([r["G"] for r in records]),
        "J": torch.cat([r["J"] for r in records]),
        "vec": torch.cat([r["vec"] for r in records]),
        "volume": torch.stack([r["volume"] for r in records]),
        "n_atoms": n_atoms,
        "batch": torch.repeat_interleave(torch.arange(len(records)), n_atoms),
        "pair_batch": torch.repeat_interleave(torch.arange(len(records)), n_pairs),
    }
    for name in LABEL_FIELDS:
        stack = torch.stack if name in ("energy", "stress") else torch.cat
        out[name] = stack([r[name] for r in records])
        out[name + "_mask"] = stack([r[name + "_mask"] for r in records])
    return out


def predict_cached(potential, batch: dict, forces: bool = True, stress: bool = False, create_graph: bool = False) -> dict:
    """Energy, atomic energies, forces and stress of a cached batch (see the module docstring)."""
    if getattr(potential.head, "needs_geometry", False):
        return predict_cached_geometry(potential, batch, forces, stress, create_graph)
    G = batch["G"]
    if forces or stress:
        G = G.detach().requires_grad_(True)
    species = batch["species"]
    atomic = potential.head(potential.scaler(G, species), species)
    n_struct = batch["n_atoms"].shape[0]
    energy = torch.zeros(n_struct, dtype=atomic.dtype, device=atomic.device).index_add(0, batch["batch"], atomic)
    out = {"energy": energy, "atomic_energies": atomic}
    if forces or stress:
        (dEdG,) = torch.autograd.grad(atomic.sum(), G, create_graph=create_graph)
        i, j = batch["edge_index"]
        c = torch.einsum("pf,pfk->pk", dEdG.index_select(0, i), batch["J"])
        if forces:
            f = G.new_zeros(G.shape[0], 3).index_add(0, i, c).index_add(0, j, -c)
            out["forces"] = f
        if stress:
            virial = torch.einsum("pa,pb->pab", batch["vec"], c)
            s = G.new_zeros(n_struct, 3, 3).index_add(0, batch["pair_batch"], virial)
            out["stress"] = s / batch["volume"][:, None, None]
    return out


def predict_cached_geometry(potential, batch: dict, forces: bool = True, stress: bool = False,
                            create_graph: bool = False) -> dict:
    """:func:`predict_cached` for heads that also use the pair vectors (``needs_geometry``, e.g. the PINN).

    E depends on r_ij directly and through G; per pair c_p = ∂E/∂r_p|_G + J_p^T ∂E/∂G_i(p),
    then forces and stress as in the module docstring. Adds ``delta`` (per-atom corrections)
    and ``penalty`` (their loss term) when the head offers ``penalty``.
    """
    G, vec = batch["G"], batch["vec"]
    if forces or stress:
        G = G.detach().requires_grad_(True)
        vec = vec.detach().requires_grad_(True)
    species, (i, j) = batch["species"], batch["edge_index"]
    head = potential.head
    with_delta = callable(getattr(head, "penalty", None))
    res = head(potential.scaler(G, species), species, vec=vec, edge_index=batch["edge_index"], return_delta=with_delta)
    atomic, delta = res if with_delta else (res, None)
    n_struct = batch["n_atoms"].shape[0]
    energy = torch.zeros(n_struct, dtype=atomic.dtype, device=atomic.device).index_add(0, batch["batch"], atomic)
    out = {"energy": energy, "atomic_energies": atomic}
    if delta is not None:
        out["delta"] = delta
        out["penalty"] = head.penalty(delta)
    if forces or stress:
        dEdG, dEdv = torch.autograd.grad(atomic.sum(), (G, vec), create_graph=create_graph, allow_unused=True)
        c = torch.zeros_like(vec) if dEdv is None else dEdv
        if dEdG is not None:
            c = c + torch.einsum("pf,pfk->pk", dEdG.index_select(0, i), batch["J"])
        if forces:
            out["forces"] = G.new_zeros(G.shape[0], 3).index_add(0, i, c).index_add(0, j, -c)
        if stress:
            virial = torch.einsum("pa,pb->pab", batch["vec"], c)
            s = G.new_zeros(n_struct, 3, 3).index_add(0, batch["pair_batch"], virial)
            out["stress"] = s / batch["volume"][:, None, None]
    return out
