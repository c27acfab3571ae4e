"""Deployment: a model file that a C++ program loads without Python (LAMMPS ``pair_style mlpot``).

``deploy(model, out)`` writes a TorchScript file (``torch.jit.save``) of the function

    (r_ij (P, 3), species (n,), pairs (2, P))  ->  atomic energies E_i (n,)

with the pairs sorted by centre i, r_ij = r_j − r_i, ``species`` the element index of every atom that
appears (centres first, then neighbours). A neighbour enters E_i only through its element and r_ij, so a
caller that evaluates a block of centres at a time may give every neighbour outside the block as one row per
element (:func:`fold`; what ``pair_style mlpot`` does, and what every deploy is checked with). The pair gradients ∂E/∂r_ij come from autograd in the caller
(``torch::autograd::grad``), and forces and virial from them as in :func:`mlpot.models.potential.forces_and_virial`.
Every descriptor and head of mlpot is local: E_i depends only on the pairs centred on i, so a caller that
lists only its own atoms as centres (ghost atoms as neighbours only) gets its share of the energy, which is
what MPI domain decomposition needs. Energies of atoms that are not centres of any pair are ignored by
the caller.

A committee (``mlpot.export.save_committee``) deploys as the mean of its members' atomic energies (one traced
function, one descriptor call): LAMMPS runs the committee's mean and gets no spread.

The file carries its description as the extra file ``mlpot.json``: ``format`` (``mlpot-deployed``),
``format_version``, the mlpot and torch versions, ``elements``, ``cutoff`` (Å), ``dtype`` and the class
names. The function is recorded by tracing (``torch.jit.trace``) on an example structure and checked
against the Python model on a second, different one before it is written: a model whose trace would
not generalise is refused, not written.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mlpot.errors import ModelFileError

FORMAT = "mlpot-deployed"
FORMAT_VERSION = 1
METADATA = "mlpot.json"
DTYPES = {"float32": torch.float32, "float64": torch.float64}


class DeployError(ModelFileError):
    """A model that cannot be deployed, or a deployed file that cannot be used."""


class LocalEnergies(nn.Module):
    """E_i of every atom from the pair vectors: descriptor → scaling → head (``Potential.local_energies``)."""

    def __init__(self, potential):
        super().__init__()
        self.potential = potential

    def forward(self, vec: torch.Tensor, species: torch.Tensor, edge_index: torch.Tensor,
                table: torch.Tensor) -> torch.Tensor:
        plan = None
        descriptor = self.potential.descriptor
        if table_cutoff(self.potential) > 0:  # ACSF's padded moment table, as wide as `table` is long
            r = torch.linalg.norm(vec, dim=-1)
            plan = descriptor._traced_plan(r, species, edge_index, table.shape[0])
        return self.potential.local_energies(vec, species, edge_index, plan)


def table_cutoff(potential) -> float:
    """The cutoff within which the caller counts the largest number of neighbours of one element around one atom
    (the width of ACSF's moment table, passed as the length of the ``table`` input); 0: none needed."""
    fn = getattr(potential.descriptor, "table_cutoff", None)
    return float(fn()) if callable(fn) else 0.0


def table_width(vec, species, edge_index, cutoff: float, n_elements: int) -> int:
    """What the C++ caller counts: the largest number of pairs with r < ``cutoff`` of one (centre, neighbour
    element), at least 1."""
    if cutoff <= 0 or vec.shape[0] == 0:
        return 1
    keep = torch.linalg.norm(vec.detach(), dim=-1) < cutoff
    rows = edge_index[0][keep] * n_elements + species[edge_index[1][keep]]
    return max(1, int(torch.bincount(rows).max())) if rows.numel() else 1


def _example(elements, cutoff: float, n_cells: int, seed: int, scale: float = 1.0):
    """A rattled periodic fcc-like cell holding every element, with neighbours up to ``cutoff``."""
    from ase import Atoms

    rng = np.random.default_rng(seed)
    a = 2.6 * 2**0.5 * scale  # nearest neighbours near 2.6 Å: every radial and angular function sees pairs
    base = np.array([[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]])
    reps = 2 + n_cells  # small: periodic images supply the neighbours up to any cutoff
    frac = np.concatenate([(base + np.array(s)) / reps for s in np.ndindex(reps, reps, reps)])
    symbols = [elements[k % len(elements)] for k in rng.permutation(len(frac))]
    cell = np.eye(3) * a * reps
    atoms = Atoms(symbols, scaled_positions=frac, cell=cell, pbc=True)
    atoms.positions += rng.normal(0.0, 0.08, atoms.positions.shape)
    return atoms


def _inputs(potential, atoms, dtype):
    from mlpot.data.graph import atoms_to_graph
    from mlpot.descriptors.geometry import edge_vectors

    g = atoms_to_graph(atoms, potential.elements, potential.cutoff, dtype=dtype, with_labels=False)
    return edge_vectors(g.positions, g.edge_index, g.shifts, g.cell, g.batch), g.species, g.edge_index


def energies_and_pair_gradients(module, vec, species, edge_index, n_local: int | None = None, meta=None):
    """What the C++ caller computes: E_i of the first ``n_local`` atoms and c_p = ∂(Σ E_i)/∂r_p (``meta``: the
    deployed file's description, for the table cutoff; a LocalEnergies module carries its own)."""
    if meta is None:
        meta = {"table_cutoff": table_cutoff(module.potential), "elements": module.potential.elements}
    width = table_width(vec, species, edge_index, meta.get("table_cutoff", 0.0), len(meta["elements"]))
    vec = vec.detach().requires_grad_(True)
    atomic = module(vec, species, edge_index, torch.empty(width, dtype=vec.dtype))
    atomic = atomic if n_local is None else atomic[:n_local]
    (c,) = torch.autograd.grad(atomic.sum(), vec, allow_unused=True)
    return atomic.detach(), (torch.zeros_like(vec) if c is None else c)


def fold(species, edge_index, centres):
    """The model's inputs for a block of centre atoms, as ``pair_style mlpot`` builds them: the ``centres``
    (indices, in order) as rows 0..n-1, then one row per element standing for every neighbour outside the block.
    Returns (pair selection, species, edge_index) for the pairs centred in the block (``edge_index`` sorted by
    centre)."""
    n_el = int(species.max()) + 1 if species.numel() else 1
    row = torch.full((species.shape[0],), -1, dtype=torch.long)
    row[centres] = torch.arange(centres.shape[0])
    sel = torch.nonzero(row[edge_index[0]] >= 0).squeeze(-1)
    i, j = row[edge_index[0, sel]], row[edge_index[1, sel]]
    order = torch.argsort(i, stable=True)
    sel, i, j = sel[order], i[order], j[order]
    outside = j < 0
    j = torch.where(outside, centres.shape[0] + species[edge_index[1, sel]], j)
    rows = torch.cat([species[centres], torch.arange(n_el)])
    return sel, rows, torch.stack([i, j])


def metadata(potential, dtype: torch.dtype) -> dict:
    from mlpot import __version__
    from mlpot.export import UNITS

    return {
        "format": FORMAT, "format_version": FORMAT_VERSION, "mlpot_version": str(__version__),
        "torch_version": str(torch.__version__), "elements": list(potential.elements),
        "cutoff": float(potential.cutoff), "dtype": str(dtype).removeprefix("torch."),
        "units": dict(UNITS),
        "descriptor": type(potential.descriptor).__name__, "head": _head_name(potential),
        "table_cutoff": table_cutoff(potential),
    }


def _head_name(potential) -> str:
    """The head's class name; a committee's: ``Committee(HDNNP x4)`` (it deploys the members' mean)."""
    members = getattr(potential, "members", None)
    if members is None:
        return type(potential.head).__name__
    heads = sorted({type(m.head).__name__ for m in members})
    return f"Committee({'+'.join(heads)} x{len(members)})"


def deploy(model, out, dtype: str | None = None, check: bool = True) -> Path:
    """Write the deployable file of ``model`` (a ``model.pt`` path or a :class:`~mlpot.Potential`) to ``out``.

    ``dtype``: ``float64`` or ``float32`` (None: the model's own). With ``check`` the traced function is
    compared with the model on a structure other than the one it was traced on (energies and pair
    gradients to 1e-9 relative in float64, 1e-4 in float32); a mismatch raises :class:`DeployError`.
    """
    import copy

    from mlpot.export import load
    from mlpot.files import atomic_write

    potential = load(model) if isinstance(model, (str, os.PathLike)) else model
    name = str(model) if isinstance(model, (str, os.PathLike)) else type(model).__name__
    if dtype is not None and dtype not in DTYPES:
        raise DeployError(f"dtype must be float32 or float64, got {dtype!r}", name)
    dt = DTYPES[dtype] if dtype else potential.dtype
    potential = copy.deepcopy(potential).to(device="cpu", dtype=dt).eval()
    for p in potential.parameters():
        p.requires_grad_(False)
    module = LocalEnergies(potential)
    vec, species, edge_index = _inputs(potential, _example(potential.elements, potential.cutoff, 0, seed=1), dt)
    width = table_width(vec, species, edge_index, table_cutoff(potential), len(potential.elements))
    example = (vec, species, edge_index, torch.empty(width, dtype=dt))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings on constants (element loops, buffers) and the deprecation
        try:
            traced = torch.jit.trace(module, example, check_trace=False)
        except Exception as e:  # noqa: BLE001 - any tracing failure is one line for the user
            raise DeployError(f"cannot trace {type(potential.descriptor).__name__} + "
                              f"{_head_name(potential)}: {type(e).__name__}: {str(e).splitlines()[0]}",
                              name) from None
    meta = metadata(potential, dt)
    if check:
        _check(traced, module, potential, dt, meta, name)
    extra = {METADATA: json.dumps(meta)}
    out = Path(out)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated in torch 2.13 (see docs/lammps.md)
        atomic_write(out, lambda tmp: torch.jit.save(traced, str(tmp), _extra_files=extra))
    return out


def _jit_load(path, extra):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.load(str(path), map_location="cpu", _extra_files=extra)


def _check(traced, module, potential, dt, meta, name):
    # another size, composition and density than the traced example: pair, triplet and neighbour counts all differ,
    # so a count the trace kept as a constant shows here
    atoms = _example(potential.elements, potential.cutoff, 1, seed=2, scale=0.92)
    atoms = atoms[: len(atoms) - 3]
    vec, species, edge_index = _inputs(potential, atoms, dt)
    e2, c2 = energies_and_pair_gradients(module, vec, species, edge_index, meta=meta)
    # the traced file as LAMMPS calls it: two blocks of centres, the neighbours outside each folded by element
    e1, c1 = torch.empty_like(e2), torch.empty_like(c2)
    for centres in torch.arange(species.shape[0]).tensor_split(2):
        sel, rows, pairs = fold(species, edge_index, centres)
        e, c = energies_and_pair_gradients(traced, vec[sel], rows, pairs, n_local=centres.shape[0], meta=meta)
        e1[centres], c1[sel] = e, c
    tol = 1e-9 if dt == torch.float64 else 1e-4
    de = float((e1 - e2).abs().max()) / max(1.0, float(e2.abs().max()))
    dc = float((c1 - c2).abs().max()) / max(1.0, float(c2.abs().max()))
    if not (de <= tol and dc <= tol):
        raise DeployError(f"the traced model differs from the model on a new structure (energies {de:.2e}, "
                          f"pair gradients {dc:.2e}, tolerance {tol:g}): this model cannot be deployed", name)


def read_metadata(path) -> dict:
    """The ``mlpot.json`` description of a deployed file (DeployError when it is not one)."""
    return _read(path)[1]


def _read(path):
    """(module, mlpot.json description) of a deployed file, read once."""
    path = Path(path)
    if not path.is_file():
        raise DeployError("deployed model file not found", str(path))
    extra = {METADATA: ""}
    try:
        module = _jit_load(path, extra)
    except Exception as e:  # noqa: BLE001
        raise DeployError(f"not a deployed mlpot model ({type(e).__name__}: {str(e).splitlines()[0][:120]})",
                          str(path)) from None
    try:
        meta = json.loads(extra[METADATA])
    except ValueError:
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise DeployError(f"not a deployed mlpot model (no {METADATA} with format {FORMAT})", str(path))
    return module, meta


def load_deployed(path):
    """(module, metadata) of a deployed file, checked as the C++ side checks it."""
    module, meta = _read(path)
    if meta.get("format_version") != FORMAT_VERSION:
        raise DeployError(f"deployed format {meta.get('format_version')} (this mlpot reads {FORMAT_VERSION}); "
                          "deploy the model.pt again with this mlpot", str(path))
    return module, meta


__all__ = ["DeployError", "FORMAT", "FORMAT_VERSION", "LocalEnergies", "deploy", "energies_and_pair_gradients", "fold",
           "load_deployed", "read_metadata"]
