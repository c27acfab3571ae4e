"""Neighbour lists with periodic images, from vesin (compiled, cell lists, O(N)).

vesin handles cells smaller than the cutoff (it walks over as many periodic
images as needed), mixed periodicity and returns integer cell shifts, which is
all a differentiable descriptor needs: the pair vector is recomputed in torch as
``r_j - r_i + S @ cell`` so that forces and stress come from autograd.
"""

from __future__ import annotations

import numpy as np
import vesin

from mlpot.errors import DegenerateCellError, OverlappingAtomsError

MIN_DISTANCE = 0.1  # Å; closer atoms are rejected as overlapping


def cell_volume(cell: np.ndarray) -> float:
    return float(abs(np.linalg.det(np.asarray(cell, dtype=np.float64))))


def _periodic_measure(cell: np.ndarray, pbc: np.ndarray) -> float:
    """Volume (3 periodic directions), area (2) or length (1) spanned by the periodic vectors."""
    vecs = cell[pbc]
    if len(vecs) == 3:
        return cell_volume(cell)
    if len(vecs) == 2:
        return float(np.linalg.norm(np.cross(vecs[0], vecs[1])))
    return float(np.linalg.norm(vecs[0]))


def _full_rank_box(cell: np.ndarray, pbc: np.ndarray) -> np.ndarray:
    """The cell, with non-periodic vectors replaced where needed so that the box has full rank."""
    if cell_volume(cell) > 1e-6:
        return cell
    box = cell.copy()
    periodic = box[pbc]
    # orthonormal completion of the periodic vectors
    q, _ = np.linalg.qr(np.column_stack([*periodic, *np.eye(3)]))
    extra = [v for v in q.T[len(periodic):]]
    for d in np.flatnonzero(~pbc):
        box[d] = extra.pop(0) * max(1.0, float(np.abs(cell).max()))
    return box


def _pairs(positions, cell, pbc, cutoff, source, frame, full: bool):
    positions = np.ascontiguousarray(positions, dtype=np.float64)
    cell = np.ascontiguousarray(cell, dtype=np.float64).reshape(3, 3)
    pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,))
    if pbc.any() and _periodic_measure(cell, pbc) < 1e-6:
        raise DegenerateCellError("periodic structure with a zero-volume cell", source, frame)
    box = _full_rank_box(cell, pbc) if pbc.any() else np.zeros((3, 3))
    nl = vesin.NeighborList(cutoff=float(cutoff), full_list=full)
    return nl.compute(positions, box, pbc if pbc.any() else False, quantities="ijSd")


def shortest_distance(positions, cell, pbc, cutoff: float = 1.0, source=None, frame=None) -> tuple[float, int, int]:
    """(distance, i, j) of the closest pair of atoms (periodic images included) when closer than ``cutoff``, else
    (cutoff, -1, -1)."""
    i, j, _, d = _pairs(positions, cell, pbc, cutoff, source, frame, full=False)
    if not len(d):
        return float(cutoff), -1, -1
    k = int(np.argmin(d))
    return float(d[k]), int(i[k]), int(j[k])


def neighbor_list(
    positions: np.ndarray,
    cell: np.ndarray,
    pbc,
    cutoff: float,
    source: str | None = None,
    frame: int | None = None,
    min_distance: float = MIN_DISTANCE,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Full neighbour list (both i→j and j→i) within ``cutoff``.

    Returns ``(i, j, shifts)`` sorted by ``i`` (then ``j``), with integer shifts
    such that ``r_ij = r[j] - r[i] + shifts @ cell``.
    """
    i, j, s, d = _pairs(positions, cell, pbc, cutoff, source, frame, full=True)
    if len(d) and d.min() < min_distance:
        k = int(np.argmin(d))
        raise OverlappingAtomsError(
            f"atoms {int(i[k])} and {int(j[k])} are {d[k]:.3g} Å apart (< {min_distance} Å)", source, frame
        )
    order = np.lexsort((j, i))
    return i[order].astype(np.int64), j[order].astype(np.int64), s[order].astype(np.int64)
