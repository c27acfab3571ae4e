"""Which crystal to evaluate: ``suite.element``, ``suite.crystal`` and ``suite.a`` given, or inferred.

An exported ``model.pt`` holds its elements and (in ``extra.config``) the training config, whose
``data.path`` names the training data. :func:`resolve` fills the suite's ``auto`` (or null) entries:

1. element: the model's one element (``mlpot.export.read_info``);
2. crystal and a: the training frames of that element that are periodic in 3-D, lowest energy per atom
   first; the first one that OVITO's structure identification labels as one crystal (> 50 % of its
   atoms fcc, bcc, hcp or diamond) gives the crystal, and its volume per atom the lattice constant;
3. when the training data is not readable (moved, built-in data, other format): ASE's reference state
   of the element (``ase.data.reference_states``), said so in the returned note.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

from mlpot.errors import SimulationConfigError

log = logging.getLogger(__name__)

AUTO = (None, "auto", "???")


def _training_frames(info: dict, element: str, limit: int = 5):
    """The lowest-energy-per-atom bulk frames of ``element`` in the model's training data (or [] and why)."""
    import ase.io

    data = ((info.get("extra") or {}).get("config") or {}).get("data") or {}
    path = data.get("path")
    if not path:
        return [], "the model file names no training data (data.path)"
    root = Path(path)
    files = [root / data.get("train_file", "train.xyz")] if root.is_dir() else [root]
    files = [f for f in files if f.is_file()] or (sorted(root.glob(data.get("pattern") or "*.xyz")) if root.is_dir() else [])
    if not files:
        return [], f"training data {path} not found"
    scored = []
    for f in files:
        try:
            frames = ase.io.read(f, ":")
        except Exception as e:  # noqa: BLE001 - any unreadable file: fall back
            return [], f"training data {f} not readable ({type(e).__name__})"
        for atoms in frames:
            if not all(atoms.pbc) or set(atoms.get_chemical_symbols()) != {element}:
                continue
            try:
                e = atoms.get_potential_energy()
            except Exception:  # noqa: BLE001 - no energy stored
                e = atoms.info.get(((data.get("keys") or {}).get("energy")) or "energy")
            if e is not None:
                scored.append((float(e) / len(atoms), atoms))
    scored.sort(key=lambda x: x[0])
    return [a for _, a in scored[:limit]], f"{len(scored)} periodic frames of {element} in {', '.join(map(str, files))}"


def resolve(suite: dict, model_path) -> tuple[dict, str]:
    """A copy of ``suite`` with element, crystal and a filled where they are ``auto``/null, and a note
    saying where they came from."""
    from ase.data import atomic_numbers, reference_states

    from mlpot.evaluate.static import lattice_constant
    from mlpot.evaluate.structure import identify_crystal

    suite = dict(suite)
    if all(suite.get(k) not in AUTO for k in ("element", "crystal", "a")):
        return suite, f"crystal given: {suite['element']} {suite['crystal']}, a = {suite['a']} Å"
    info = None
    if model_path is not None and not isinstance(model_path, dict):
        from mlpot.export import read_info

        try:
            info = read_info(model_path)
        except Exception:  # noqa: BLE001 - e.g. a reference that is not a model file
            info = None
    element = suite.get("element")
    if element in AUTO:
        elements = (info or {}).get("elements") or []
        if len(elements) != 1:
            raise SimulationConfigError(f"suite.element=auto needs a one-element model file; {model_path} has "
                                        f"{elements or 'no readable elements'}: set suite.element")
        element = elements[0]
    suite["element"] = element
    crystal, a, how = suite.get("crystal"), suite.get("a"), ""
    if crystal in AUTO or a in AUTO:
        frames, why = _training_frames(info or {}, element)
        for atoms in frames:
            label, fraction = identify_crystal(atoms)
            if label != "other" and (crystal in AUTO or label == crystal):
                covera = suite.get("covera") if suite.get("covera") not in AUTO else None
                if label == "hcp" and covera is None:
                    la, lb, lc = atoms.cell.cellpar()[:3]
                    covera = float(lc / la) if abs(la - lb) < 1e-3 else None  # a hexagonal cell of 2 atoms
                    suite["covera"] = covera
                crystal = label
                if a in AUTO:
                    a = lattice_constant(label, atoms.get_volume() / len(atoms), covera)
                how = (f"from the model's training data ({why}): the lowest-energy bulk frame identified as {label} "
                       f"({100 * fraction:.0f} % of its {len(atoms)} atoms, OVITO)")
                break
        else:
            ref = reference_states[atomic_numbers[element]] or {}
            if ref.get("symmetry") not in ("fcc", "bcc", "hcp", "diamond"):
                raise SimulationConfigError(f"suite.crystal=auto: no crystal found for {element} ({why}) and ASE's "
                                            f"reference state is {ref.get('symmetry')}: set suite.crystal and suite.a")
            crystal = ref["symmetry"] if crystal in AUTO else crystal
            if a in AUTO:
                a = float(ref["a"]) if crystal == ref["symmetry"] else None
                if a is None:
                    raise SimulationConfigError(f"suite.a=auto: no lattice constant for {element} {crystal}: set suite.a")
            if crystal == "hcp" and suite.get("covera") in AUTO:
                suite["covera"] = ref.get("c/a")
            how = f"from ASE's reference state of {element} ({why})"
    suite["crystal"], suite["a"] = crystal, float(a)
    if not math.isfinite(suite["a"]) or suite["a"] <= 0:
        raise SimulationConfigError(f"suite.a must be a positive length, got {a!r}")
    note = f"crystal: {element} {crystal}, starting a = {suite['a']:.4f} Å, {how or 'given'}"
    log.info(note)
    return suite, note


__all__ = ["resolve"]
