"""ASE calculator over a :class:`~mlpot.Potential` (or an exported model file).

Speed (measured in ``docs/md_speed.md``): the neighbour list is kept between calls while no atom has moved more
than half the ``skin`` (pair vectors are recomputed from the current positions with the stored cell shifts, and
only the pairs inside the cutoff go to the model, so the results equal those of a fresh list), the angular
descriptor work runs only over the pairs inside the angular cutoff, and ``compile=True`` runs the model through
``torch.compile``.
"""

from __future__ import annotations

import copy
import os
import warnings

import numpy as np
import torch
from ase.calculators.calculator import Calculator, all_changes

from mlpot.data.frames import check_structure
from mlpot.data.neighbors import MIN_DISTANCE, neighbor_list
from mlpot.errors import NonFiniteError, OverlappingAtomsError

_DTYPES = {"float32": torch.float32, "float64": torch.float64, torch.float32: torch.float32, torch.float64: torch.float64}


class NeighborCache:
    """A neighbour list within ``cutoff + skin``, rebuilt only when needed; :meth:`pairs` gives the pairs inside
    ``cutoff`` at the current positions.

    Rebuilt when an atom moved more than ``skin / 2`` since the last build (then no pair can have come from
    beyond ``cutoff + skin`` to inside ``cutoff``), or when the cell, the periodicity or the number of atoms
    changed; ``skin = 0`` rebuilds on every call. ``rebuilds`` counts the builds."""

    def __init__(self, cutoff: float, skin: float = 1.0):
        if not skin >= 0:
            raise ValueError(f"skin must be >= 0, got {skin!r}")
        self.cutoff, self.skin = float(cutoff), float(skin)
        self.rebuilds = 0
        self._key = None

    def _stale(self, positions, cell, pbc) -> bool:
        if self._key is None or self.skin == 0.0:
            return True
        ref_pos, ref_cell, ref_pbc = self._key
        if positions.shape != ref_pos.shape or not np.array_equal(cell, ref_cell) or not np.array_equal(pbc, ref_pbc):
            return True
        moved = np.einsum("ij,ij->i", positions - ref_pos, positions - ref_pos).max(initial=0.0)
        return not moved <= (0.5 * self.skin) ** 2  # NaN: rebuild (and fail there)

    def pairs(self, positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, source=None):
        """(edge_index (2, P) long, vec (P, 3) float64): the pairs within ``cutoff``, sorted by centre, and their
        vectors r_j - r_i + S·cell at ``positions`` (float64)."""
        if self._stale(positions, cell, pbc):
            i, j, s = neighbor_list(positions, cell, pbc, self.cutoff + self.skin, source)
            self._ij = torch.from_numpy(np.stack([i, j]))
            self._offsets = torch.from_numpy(s.astype(np.float64) @ cell)  # S·cell (the cell is fixed until a rebuild)
            self._key = (positions.copy(), cell.copy(), pbc.copy())
            self.rebuilds += 1
        pos = torch.from_numpy(positions)
        i, j = self._ij
        vec = pos.index_select(0, j) - pos.index_select(0, i) + self._offsets
        if self.skin == 0.0:
            return self._ij, vec
        d2 = (vec * vec).sum(1)
        keep = torch.nonzero(d2 < self.cutoff**2).squeeze(1)
        if keep.shape[0] and self.skin > 0.0:  # a fresh list would refuse atoms this close (neighbors.MIN_DISTANCE)
            d2_min, k = d2.index_select(0, keep).min(0)
            if d2_min < MIN_DISTANCE**2:
                p = int(keep[k])
                raise OverlappingAtomsError(f"atoms {int(i[p])} and {int(j[p])} are {float(d2_min) ** 0.5:.3g} Å apart "
                                            f"(< {MIN_DISTANCE} Å)", source, None)
        return self._ij.index_select(1, keep), vec.index_select(0, keep)


class MLPotCalculator(Calculator):
    """energy, free_energy, energies (per atom), forces, stress (eV, eV/Å, eV/Å³, ASE order).

    The potential is copied to ``device``/``dtype``; the caller's object and torch's global state (default
    dtype, grad mode) are left untouched.

    * ``dtype``: ``None`` (default) evaluates in the potential's own dtype, i.e. for an exported model the dtype
      it was trained and saved in (mlpot trains in float32 by default; n2p2 potentials load as float64);
      ``"float32"`` or ``"float64"`` force one. float32 is about 2x faster and takes half the memory; its forces
      differ from float64's by ~1e-5 eV/Å (far below any model's error). Pair vectors are always formed in
      float64 from the positions (then cast), and the total energy is summed in float64 from the atomic
      energies, so large cells lose no precision to absolute coordinates or to the long sum.
    * ``skin`` (Å, default 1.0): neighbour list within cutoff + skin, reused until an atom moved more than
      skin/2 (or the cell, periodicity or atom count changed); 0 rebuilds it on every call. The model sees the
      same pairs either way (to the summation order: equal results to ~1e-14).
    * ``compile``: False (default) or True: run energy, forces and stress through ``torch.compile`` (dynamic
      shapes, so changing pair counts do not recompile). Faster per step and far less memory, but the first
      call compiles (~20-60 s); worth it for MD runs of more than a few hundred steps. If compiling fails the
      calculator warns once and goes on uncompiled.
    * ``threads``: None leaves torch's thread count as it is; ``"auto"`` sets it as the apps do (the cores no
      other program is busy on, ``mlpot.system.set_threads``); an integer sets that many (process-wide).

    Making one tunes glibc's allocator for the process (:func:`mlpot.system.tune_allocator`: freed tensors are kept
    for reuse instead of being mapped afresh every call, 1.6-2.4x faster on large cells); ``MLPOT_TUNE_MALLOC=0``
    leaves the allocator alone.

    The stress is computed whenever the cell is periodic in all three directions (it costs one extra pair
    sum), so an MD step that asks for forces and then the stress evaluates the model once.

    A committee (:class:`~mlpot.models.committee.Committee`, or a committee ``model.pt``) is used like one model:
    energy, energies, forces and stress are the members' mean, and the results also hold the spread (population
    standard deviation over the members): ``energy_std`` (eV), ``energies_std`` (per atom, eV), ``forces_std``
    (per atom, eV/Å: the norm of the per-component standard deviations), ``max_force_std`` and
    ``mean_force_std`` (eV/Å). A single model gives none of these keys (``calc.results.get("forces_std")`` is
    None): no spread is not a zero spread.
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]

    def __init__(self, potential, device: str = "cpu", dtype: str | None = None, threads=None, skin: float = 1.0,
                 compile: bool = False, **kwargs):
        super().__init__(**kwargs)
        from mlpot.system import tune_allocator

        tune_allocator()  # freed tensors stay for reuse (n2p2 Cu2S, 3 888 atoms: 8.4-9.0 s -> 3.7-5.0 s per call)
        if threads is not None:
            from mlpot.system import set_threads

            set_threads(None if threads == "auto" else threads)
        if isinstance(potential, (str, os.PathLike)):
            from mlpot.export import load  # exported model file

            potential = load(potential)
        if dtype is not None and dtype not in _DTYPES:
            raise ValueError(f"dtype must be None, 'float32' or 'float64', got {dtype!r}")
        self.dtype = potential.dtype if dtype is None else _DTYPES[dtype]
        from mlpot.models.committee import SPREAD_KEYS, Committee

        self.is_committee = isinstance(potential, Committee)
        if self.is_committee:  # this instance also reports the spread
            self.implemented_properties = [*type(self).implemented_properties, *SPREAD_KEYS]
        self.device = torch.device(device)
        self.potential = copy.deepcopy(potential).to(device=self.device, dtype=self.dtype).eval()
        for p in self.potential.parameters():
            p.requires_grad_(False)
        self.neighbors = NeighborCache(self.potential.cutoff, skin)
        self.compile = bool(compile)
        self._compiled = None
        self._numbers = None
        index = {el: k for k, el in enumerate(self.potential.elements)}
        from ase.data import atomic_numbers

        self._species_of = np.full(max(atomic_numbers.values()) + 1, -1, dtype=np.int64)
        for el, k in index.items():
            self._species_of[atomic_numbers[el]] = k

    @property
    def skin(self) -> float:
        return self.neighbors.skin

    # -- the model call (compiled or not) -----------------------------------------------------------
    def _evaluate(self, vec, species, edge_index, volume, stress: bool, plan):
        batch = torch.zeros(species.shape[0], dtype=torch.long, device=species.device)
        out = self.potential.forward_edges(vec, species, edge_index, batch, 1, volume, True, stress, plan=plan)
        members = out.get("members")  # a committee: the members' energies and forces
        return (out["atomic_energies"], out["forces"], out.get("stress"), out["descriptors"],
                None if members is None else (members["energy"], members["atomic_energies"], members["forces"]))

    def _run(self, vec, species, edge_index, volume, stress: bool, plan):
        if not self.compile:
            return self._evaluate(vec, species, edge_index, volume, stress, plan)
        if self._compiled is None:
            self._compiled = torch.compile(self._evaluate, dynamic=True)
        try:
            return self._compiled(vec, species, edge_index, volume, stress, plan)
        except Exception as exc:  # noqa: BLE001 - any compiler failure: go on uncompiled
            warnings.warn(f"torch.compile failed, running uncompiled: {type(exc).__name__}: "
                          f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"[:300], stacklevel=3)
            self.compile, self._compiled = False, None
            return self._evaluate(vec, species, edge_index, volume, stress, plan)

    def _check(self, atoms) -> np.ndarray:
        """Finite positions and cell on every call; the elements when the atomic numbers changed. The species."""
        if not np.all(np.isfinite(atoms.positions)) or not np.all(np.isfinite(atoms.cell.array)):
            check_structure(atoms, source="structure")  # raises NonFiniteError with the usual message
            raise NonFiniteError("NaN or inf in positions or cell", "structure", None)
        numbers = atoms.numbers
        if self._numbers is None or not np.array_equal(numbers, self._numbers):
            check_structure(atoms, source="structure", elements=self.potential.elements)
            self._numbers, self._species = numbers.copy(), torch.from_numpy(self._species_of[numbers])
        return self._species

    def _post(self, G, species) -> None:
        """Called with the descriptors of each evaluation (subclasses: extrapolation monitors)."""

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        species = self._check(atoms).to(self.device)
        pbc = np.asarray(atoms.pbc, dtype=bool)
        want_stress = bool(pbc.all())
        positions = np.ascontiguousarray(atoms.positions, dtype=np.float64)
        cell = np.ascontiguousarray(atoms.cell.array, dtype=np.float64)
        edge_index, vec = self.neighbors.pairs(positions, cell, pbc)
        edge_index = edge_index.to(self.device)
        vec = vec.to(device=self.device, dtype=self.dtype)
        volume = torch.tensor([abs(np.linalg.det(cell)) if want_stress else 1.0], dtype=self.dtype, device=self.device)
        plan = None
        if hasattr(self.potential.descriptor, "edge_plan"):
            r = torch.linalg.norm(vec, dim=-1)
            # compiled: one chunk (checkpointed chunks do not go through inductor's backward; the compiled
            # graph keeps far fewer intermediates anyway)
            chunking = {"triplet_chunk": 1 << 62, "moment_chunk": 1 << 62} if self.compile else {}
            plan = self.potential.descriptor.edge_plan(r, species, edge_index, vec, once_differentiable=True,
                                                       **chunking)
        with torch.enable_grad():
            atomic, forces, stress, G, members = self._run(vec, species, edge_index, volume, want_stress, plan)
        self._post(G.detach(), species)
        atomic = atomic.detach().cpu().numpy().astype(np.float64)
        energy = float(atomic.sum())
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "energies": atomic,
            "forces": forces.detach().cpu().numpy().astype(np.float64),
        }
        if want_stress:
            s = stress.detach().cpu().numpy()[0].astype(np.float64)
            self.results["stress"] = np.array([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]])
        if members is not None:
            from mlpot.models.committee import spread

            self.results.update(spread(dict(zip(("energy", "atomic_energies", "forces"), members))))
