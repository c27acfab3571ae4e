"""mlpot: machine-learning interatomic potentials, config-driven."""

from mlpot.models.potential import Potential

__version__ = "0.1.0"
__all__ = ["Potential", "__version__"]
