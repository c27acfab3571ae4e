"""Pair vectors and triplets from a flat graph: shared by every descriptor."""

from __future__ import annotations

import torch


def edge_vectors(positions, edge_index, shifts, cell, batch) -> torch.Tensor:
    """r_ij = r_j - r_i + shifts @ cell, differentiable in positions and cell."""
    i, j = edge_index
    offsets = torch.einsum("pk,pkl->pl", shifts, cell[batch[i]])
    return positions[j] - positions[i] + offsets


@torch.no_grad()
def triplets(center: torch.Tensor, n_atoms: int, mask: torch.Tensor | None = None):
    """All unordered pairs of pairs (p1, p2), p1 < p2, that share their centre atom.

    ``center`` must be sorted (pairs grouped by centre). Pairs with ``mask``
    False are left out. Returns two index tensors into the pair list. Cost and
    memory are O(n_triplets); no Python loop.
    """
    idx = torch.arange(center.shape[0], device=center.device)
    if mask is not None:
        idx, center = idx[mask], center[mask]
    counts = torch.bincount(center, minlength=n_atoms)
    start = torch.cumsum(counts, 0) - counts
    per_atom = counts * (counts - 1) // 2
    # a deployed (traced) model must not bake the triplet count of its example in: no Python int there
    total = None if torch.jit.is_tracing() else int(per_atom.sum())
    atom = torch.repeat_interleave(torch.arange(n_atoms, device=center.device), per_atom, output_size=total)
    q = torch.arange(atom.shape[0], device=center.device) - (torch.cumsum(per_atom, 0) - per_atom)[atom]
    # invert q = b (b - 1) / 2 + a with 0 <= a < b
    b = torch.floor((1.0 + torch.sqrt(1.0 + 8.0 * q.double())) / 2.0).long()
    b = b - (b * (b - 1) // 2 > q).long()
    b = b + ((b + 1) * b // 2 <= q).long()
    a = q - b * (b - 1) // 2
    base = start[atom]
    return idx[base + a], idx[base + b]
