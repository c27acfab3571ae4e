"""mlpot: machine-learning interatomic potentials, config-driven."""

from mlpot.models.potential import Potential

__version__ = "0.1.0"

from mlpot.export import load, save  # noqa: E402  (after __version__)

__all__ = ["Potential", "__version__", "load", "save"]
