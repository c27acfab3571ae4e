"""mlpot: machine-learning interatomic potentials, config-driven.

``mlpot.Potential``, ``mlpot.load`` and ``mlpot.save`` are imported on first use, so that importing the package
alone (``mlpot.__version__``, ``mlpot.errors``) does not load torch.
"""

__version__ = "0.2.0"

_LAZY = {"Potential": ("mlpot.models.potential", "Potential"), "load": ("mlpot.export", "load"),
         "save": ("mlpot.export", "save"),
         "Committee": ("mlpot.models.committee", "Committee"), "save_committee": ("mlpot.export", "save_committee")}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'mlpot' has no attribute {name!r}")


__all__ = ["Committee", "Potential", "__version__", "load", "save", "save_committee"]
