"""Scatter sums, the one reduction of the hot paths, with a choice of backend.

``scatter_sum(src, index, n)`` is ``zeros(n, ...).index_add(0, index, src)``: torch's own ``index_add``
(``native``, the default) or ``torch_scatter.scatter_add`` (``torch_scatter``, where the optional
torch-scatter package is installed; it has no wheels for every torch release, so it is never required).
Both are differentiable twice, as training on the fly needs. Choose with :func:`set_scatter_backend`
(``mlpot-train training.scatter=torch_scatter``); measured on CPU it brings nothing, on CUDA see
``scripts/check_gpu.sh``.
"""

from __future__ import annotations

import torch

BACKENDS = ("native", "torch_scatter")
_backend = {"name": "native", "fn": None}


def set_scatter_backend(name: str) -> None:
    """Select the backend of :func:`scatter_sum` for this process (``native`` or ``torch_scatter``)."""
    if name not in BACKENDS:
        raise ValueError(f"scatter backend must be one of {', '.join(BACKENDS)}, got {name!r}")
    if name == "torch_scatter":
        try:
            from torch_scatter import scatter_add
        except ImportError as exc:  # no wheel for this torch, or not installed
            raise ImportError("training.scatter=torch_scatter needs the torch-scatter package "
                              f"({type(exc).__name__}: {exc}); use training.scatter=native") from None
        _backend.update(name=name, fn=scatter_add)
    else:
        _backend.update(name=name, fn=None)


def scatter_backend() -> str:
    return _backend["name"]


def scatter_sum(src: torch.Tensor, index: torch.Tensor, n: int) -> torch.Tensor:
    """out[k] = Σ_{p: index[p] = k} src[p] along dimension 0, for k < n."""
    fn = _backend["fn"]
    if fn is not None:
        return fn(src, index, dim=0, dim_size=n)
    return src.new_zeros((n, *src.shape[1:])).index_add(0, index, src)


__all__ = ["scatter_sum", "set_scatter_backend", "scatter_backend", "BACKENDS"]
