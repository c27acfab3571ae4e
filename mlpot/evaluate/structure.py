"""Structure analysis of frames: RDF, bond-length and bond-angle distributions, structure identification.

Structure identification is OVITO's (``ovito`` wheel from PyPI): adaptive common-neighbour analysis
(Stukowski, Modelling Simul. Mater. Sci. Eng. 20, 045021 (2012)) labels fcc, hcp, bcc and icosahedral
atoms; atoms it leaves as "other" go through OVITO's identify-diamond modifier (cubic and hexagonal
diamond, Maras et al., Comput. Phys. Commun. 205, 13 (2016)), whose first/second-neighbour variants
(surface-like atoms of a diamond crystal) are counted as diamond.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
from ase import Atoms
from ase.neighborlist import neighbor_list

OTHER, FCC, HCP, BCC, ICO, DIAMOND, HEX_DIAMOND = range(7)
LABELS = {OTHER: "other", FCC: "fcc", HCP: "hcp", BCC: "bcc", ICO: "ico", DIAMOND: "diamond",
          HEX_DIAMOND: "hex_diamond"}
CRYSTALS = ("fcc", "bcc", "hcp", "diamond")


def _frames(frames) -> list[Atoms]:
    return [frames] if isinstance(frames, Atoms) else list(frames)


def structure_types(atoms: Atoms) -> np.ndarray:
    """Per-atom structure type (:data:`FCC`, :data:`HCP`, :data:`BCC`, :data:`ICO`, :data:`DIAMOND`,
    :data:`HEX_DIAMOND` or :data:`OTHER`) by OVITO's adaptive CNA, then its diamond identification."""
    from ovito.io.ase import ase_to_ovito
    from ovito.modifiers import CommonNeighborAnalysisModifier as CNA
    from ovito.modifiers import IdentifyDiamondModifier as IDM

    n = len(atoms)
    if n == 0:
        return np.zeros(0, dtype=np.int8)
    a = atoms.copy()
    a.calc = None
    data = ase_to_ovito(a)
    data.apply(CNA(mode=CNA.Mode.AdaptiveCutoff))
    cna = np.asarray(data.particles["Structure Type"])
    out = np.full(n, OTHER, dtype=np.int8)
    for ovito_type, ours in ((CNA.Type.FCC, FCC), (CNA.Type.HCP, HCP), (CNA.Type.BCC, BCC), (CNA.Type.ICO, ICO)):
        out[cna == int(ovito_type)] = ours
    if np.any(out == OTHER):
        data = ase_to_ovito(a)
        data.apply(IDM())
        dia = np.asarray(data.particles["Structure Type"])
        rest = out == OTHER
        for ovito_type, ours in ((IDM.Type.CUBIC_DIAMOND, DIAMOND), (IDM.Type.CUBIC_DIAMOND_FIRST_NEIGHBOR, DIAMOND),
                                 (IDM.Type.CUBIC_DIAMOND_SECOND_NEIGHBOR, DIAMOND), (IDM.Type.HEX_DIAMOND, HEX_DIAMOND),
                                 (IDM.Type.HEX_DIAMOND_FIRST_NEIGHBOR, HEX_DIAMOND),
                                 (IDM.Type.HEX_DIAMOND_SECOND_NEIGHBOR, HEX_DIAMOND)):
            out[rest & (dia == int(ovito_type))] = ours
    return out


def structure_fractions(frames: Atoms | Sequence[Atoms], mask: np.ndarray | None = None) -> dict:
    """Fraction of atoms of each label (``LABELS``' names) in each frame; ``crystalline`` = fcc + hcp +
    bcc + diamond + hex_diamond (not icosahedral, not other). ``mask``: count only these atoms."""
    out = {name: [] for name in LABELS.values()}
    out["crystalline"] = []
    for atoms in _frames(frames):
        t = structure_types(atoms)
        if mask is not None:
            t = t[np.asarray(mask, dtype=bool)]
        counts = np.bincount(t, minlength=len(LABELS)) / max(len(t), 1)
        for code, name in LABELS.items():
            out[name].append(float(counts[code]))
        out["crystalline"].append(float(counts[[FCC, HCP, BCC, DIAMOND, HEX_DIAMOND]].sum()))
    return out


def crystalline_fraction(frames: Atoms | Sequence[Atoms], mask: np.ndarray | None = None) -> dict:
    """Fractions of fcc, hcp, bcc, diamond and crystalline atoms in each frame (see :func:`structure_fractions`).

    ``mask``: count only these atoms (e.g. the free, non-seed atoms of a growth run)."""
    return structure_fractions(frames, mask)


def identify_crystal(frames: Atoms | Sequence[Atoms]) -> tuple[str, float]:
    """The majority crystal label over all atoms of ``frames`` and its fraction (``"other"`` when no
    crystal label holds the majority, e.g. a liquid)."""
    types = np.concatenate([structure_types(a) for a in _frames(frames)])
    counts = np.bincount(types, minlength=len(LABELS))
    code = int(np.argmax(counts))
    fraction = float(counts[code] / max(len(types), 1))
    name = LABELS[code]
    return (name if name in CRYSTALS and fraction > 0.5 else "other"), fraction


def cell_heights(atoms: Atoms) -> np.ndarray:
    """Distances between opposite faces of the cell (Å)."""
    cell = atoms.cell.array
    v = abs(np.linalg.det(cell))
    return np.array([v / np.linalg.norm(np.cross(cell[(i + 1) % 3], cell[(i + 2) % 3])) for i in range(3)])


def repeat_for_rmax(atoms: Atoms, rmax: float) -> Atoms:
    """``atoms`` repeated along periodic directions until every cell height exceeds 2 ``rmax``
    (what ASE's RDF needs; the repeated frame has the same g(r))."""
    h = cell_heights(atoms)
    reps = [max(1, math.floor(2 * rmax / hi) + 1) if p else 1 for hi, p in zip(h, atoms.pbc)]
    return atoms.repeat(reps) if any(r > 1 for r in reps) else atoms


def rdf(frames: Atoms | Iterable[Atoms], rmax: float = 5.0, nbins: int = 100) -> dict:
    """Radial distribution function g(r) averaged over frames (``ase.geometry.rdf.get_rdf``); frames
    smaller than 2 ``rmax`` are repeated first (:func:`repeat_for_rmax`). ``r`` in Å.

    Also the standard error of g over frames (``g_err``, 0 for a single frame)."""
    from ase.geometry.rdf import get_rdf

    gs, r = [], None
    for atoms in _frames(frames):
        g, r = get_rdf(repeat_for_rmax(atoms, rmax), rmax, nbins)
        gs.append(g)
    gs = np.asarray(gs)
    g = gs.mean(axis=0)
    err = gs.std(axis=0, ddof=1) / np.sqrt(len(gs)) if len(gs) > 1 else np.zeros_like(g)
    return {"r": np.asarray(r).tolist(), "g": g.tolist(), "g_err": err.tolist(),
            "r_peak": float(np.asarray(r)[int(np.argmax(g))])}


def bond_distributions(frames: Atoms | Iterable[Atoms], cutoff: float = 3.0, nbins: int = 60,
                       length_range: tuple[float, float] | None = None) -> dict:
    """Histograms (densities) of bond lengths (pairs closer than ``cutoff``, Å) and of bond angles
    (degrees) between two bonds of the same atom, over all frames; plus means."""
    lengths, angles = [], []
    for atoms in _frames(frames):
        i, d, D = neighbor_list("idD", atoms, cutoff)
        lengths.append(d)  # every bond twice (once per centre): the density is unchanged
        if len(i) == 0:
            continue
        order = np.argsort(i, kind="stable")
        i, D = i[order], D[order]
        counts = np.bincount(i, minlength=len(atoms))
        width = int(counts.max())
        slot = np.arange(len(i)) - np.repeat(np.cumsum(counts) - counts, counts)
        vec = np.full((len(atoms), width, 3), np.nan)
        vec[i, slot] = D
        unit = vec / np.linalg.norm(vec, axis=-1, keepdims=True)
        cos = np.einsum("nad,nbd->nab", unit, unit)
        upper = np.triu(np.ones((width, width), dtype=bool), k=1)
        c = cos[:, upper]
        angles.append(np.degrees(np.arccos(np.clip(c[np.isfinite(c)], -1.0, 1.0))))
    lengths = np.concatenate(lengths) if lengths else np.zeros(0)
    lengths = lengths[lengths > 0]
    angles = np.concatenate(angles) if angles else np.zeros(0)
    lr = length_range or (0.0, cutoff)
    hl, el = np.histogram(lengths, bins=nbins, range=lr, density=True)
    ha, ea = np.histogram(angles, bins=nbins, range=(0.0, 180.0), density=True)
    return {"length_edges": el.tolist(), "length_density": hl.tolist(), "mean_length": float(lengths.mean()) if len(lengths) else float("nan"),
            "angle_edges": ea.tolist(), "angle_density": ha.tolist(), "mean_angle": float(angles.mean()) if len(angles) else float("nan")}


def time_to_fraction(times: Sequence[float], fractions: Sequence[float], threshold: float = 0.9) -> float | None:
    """The first time at which ``fractions`` reaches ``threshold`` (None if never)."""
    for t, f in zip(times, fractions):
        if f >= threshold:
            return float(t)
    return None
