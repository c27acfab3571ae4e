from mlpot.data.frames import LabelKeys, read_frames
from mlpot.data.graph import AtomicGraph, atoms_to_graph

__all__ = ["LabelKeys", "read_frames", "AtomicGraph", "atoms_to_graph"]
