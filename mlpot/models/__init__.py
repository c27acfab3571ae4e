from mlpot.models.committee import Committee
from mlpot.models.hdnnp import HDNNP
from mlpot.models.mlp import MLP, ElementMLPs
from mlpot.models.pinn import PINN
from mlpot.models.potential import Potential

__all__ = ["Committee", "HDNNP", "MLP", "ElementMLPs", "Potential", "PINN"]
