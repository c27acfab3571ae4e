"""Structure analysis of frames: RDF, bond-length and bond-angle distributions, crystalline fraction.

The crystalline fraction uses adaptive common-neighbour analysis (a-CNA, Stukowski, Modelling Simul.
Mater. Sci. Eng. 20, 045021 (2012)) for fcc and hcp, vectorised in numpy over ASE's neighbour list
(no library that does CNA installs here without compiling: asap3 and ovito were considered):
per atom, the 12 nearest neighbours and the local cutoff r_c = (1 + √2)/2 · their mean distance;
for each of the 12 bonds, the signature (common neighbours, bonds among them, longest chain)
is 421 twelve times for fcc, 421 six times and 422 six times for hcp.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from ase import Atoms
from ase.data import covalent_radii
from ase.neighborlist import neighbor_list

OTHER, FCC, HCP = 0, 1, 2
LABELS = {OTHER: "other", FCC: "fcc", HCP: "hcp"}


def _frames(frames) -> list[Atoms]:
    return [frames] if isinstance(frames, Atoms) else list(frames)


def rdf(frames: Atoms | Iterable[Atoms], rmax: float = 5.0, nbins: int = 100) -> dict:
    """Radial distribution function g(r) averaged over frames (``ase.geometry.rdf.get_rdf``).

    ``rmax`` must be below half the smallest cell height (ASE checks it)."""
    from ase.geometry.rdf import get_rdf

    gs, r = [], None
    for atoms in _frames(frames):
        g, r = get_rdf(atoms, rmax, nbins)
        gs.append(g)
    g = np.mean(gs, axis=0)
    return {"r": np.asarray(r).tolist(), "g": g.tolist(), "r_peak": float(np.asarray(r)[int(np.argmax(g))])}


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


def adaptive_cna(atoms: Atoms, cutoff: float | None = None) -> np.ndarray:
    """Per-atom structure type by adaptive CNA: :data:`FCC`, :data:`HCP` or :data:`OTHER`.

    ``cutoff`` (Å) must enclose the 12 nearest neighbours (default 1.45 × twice the largest covalent
    radius of the elements present, well past the first shell and short of the third)."""
    n = len(atoms)
    if cutoff is None:
        cutoff = 1.45 * 2 * float(covalent_radii[np.unique(atoms.numbers)].max())
    i, d, D = neighbor_list("idD", atoms, cutoff)
    types = np.full(n, OTHER, dtype=np.int8)
    counts = np.bincount(i, minlength=n)
    # sort every centre's neighbours by distance and keep the 12 nearest (centres with >= 12 only)
    order = np.lexsort((d, i))
    i, d, D = i[order], d[order], D[order]
    first = np.cumsum(counts) - counts
    slot = np.arange(len(i)) - np.repeat(first, counts)
    keep = slot < 12
    ok = counts >= 12
    centres = np.flatnonzero(ok)
    if len(centres) == 0:
        return types
    sel = keep & ok[i]
    vec = np.zeros((n, 12, 3))
    vec[i[sel], slot[sel]] = D[sel]
    vec = vec[centres]
    dist = np.linalg.norm(vec, axis=-1)
    rc = (1 + np.sqrt(2)) / 2 * dist.mean(axis=1)
    pair = np.linalg.norm(vec[:, :, None, :] - vec[:, None, :, :], axis=-1)
    bond = (pair < rc[:, None, None]) & ~np.eye(12, dtype=bool)
    # common neighbours of (centre, neighbour a): the centre's neighbours bonded to a
    cn = bond  # cn[m, a, b]: b is a common neighbour of the pair (centre, a)
    ncn = cn.sum(-1)
    sub = cn[:, :, :, None] & cn[:, :, None, :] & bond[:, None, :, :]  # bonds among the common neighbours
    nb = sub.sum((-1, -2)) // 2
    deg = sub.sum(-1).max(-1)  # largest degree in the common-neighbour bond graph (chain: 1 or 2 for nb=2)
    is421 = (ncn == 4) & (nb == 2) & (deg == 1)
    is422 = (ncn == 4) & (nb == 2) & (deg == 2)
    n421, n422 = is421.sum(1), is422.sum(1)
    types[centres[n421 == 12]] = FCC
    types[centres[(n421 == 6) & (n422 == 6)]] = HCP
    return types


def crystalline_fraction(frames: Atoms | Sequence[Atoms], cutoff: float | None = None,
                         mask: np.ndarray | None = None) -> dict:
    """Fractions of fcc, hcp and crystalline (fcc + hcp) atoms in each frame (a-CNA).

    ``mask``: count only these atoms (e.g. the free, non-seed atoms of a growth run)."""
    fcc, hcp = [], []
    for atoms in _frames(frames):
        t = adaptive_cna(atoms, cutoff)
        if mask is not None:
            t = t[np.asarray(mask, dtype=bool)]
        fcc.append(float(np.mean(t == FCC)) if len(t) else 0.0)
        hcp.append(float(np.mean(t == HCP)) if len(t) else 0.0)
    return {"fcc": fcc, "hcp": hcp, "crystalline": [a + b for a, b in zip(fcc, hcp)]}


def time_to_fraction(times: Sequence[float], fractions: Sequence[float], threshold: float = 0.9) -> float | None:
    """The first time at which ``fractions`` reaches ``threshold`` (None if never)."""
    for t, f in zip(times, fractions):
        if f >= threshold:
            return float(t)
    return None
