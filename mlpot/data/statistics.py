"""Training-split statistics from one streaming pass: per-element reference energies (least squares), mean
atomic energies, and the descriptor scaling statistics (``FeatureStatistics``), never holding the split."""

from __future__ import annotations

import numpy as np
import torch

from mlpot.descriptors.scaling import FeatureStatistics


def reference_energies(store, indices, elements_z: list[int]) -> list[float]:
    """Per-element E0 by least squares of the frames' energies against their composition (frames with an
    energy label among ``indices``)."""
    indices = np.asarray(indices, dtype=np.int64)
    indices = indices[store.has("energy")[indices]]
    counts = store.composition(elements_z)[indices].astype(float)
    energies = store.energies()[indices]
    e0, *_ = np.linalg.lstsq(counts, energies, rcond=None)
    return e0.tolist()


def mean_atomic_energies(store, indices, elements_z: list[int], fallback) -> list[float]:
    """Per-element mean of the atomic-energy labels over ``indices`` (``fallback`` for elements without any):
    the least-squares E0 is degenerate when every frame has the same composition."""
    lookup = np.full(256, -1, dtype=np.int64)
    lookup[np.asarray(elements_z, dtype=np.int64)] = np.arange(len(elements_z))
    sums, counts = np.zeros(len(elements_z)), np.zeros(len(elements_z))
    for k in np.asarray(indices, dtype=np.int64):
        d = store.read(int(k))
        if d["atomic_energies"] is not None:
            idx = lookup[d["numbers"]]
            np.add.at(sums, idx, d["atomic_energies"])
            np.add.at(counts, idx, 1)
    return [float(s / c) if c else float(f) for s, c, f in zip(sums, counts, fallback)]


@torch.no_grad()
def descriptor_statistics(batches, n_elements: int, n_features: int) -> FeatureStatistics:
    """Scaling statistics from an iterable of (G, species) chunks."""
    stats = FeatureStatistics(n_elements, n_features)
    for G, species in batches:
        stats.update(G, species)
    return stats


__all__ = ["reference_energies", "mean_atomic_energies", "descriptor_statistics"]
