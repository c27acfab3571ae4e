from mlpot.models.hdnnp import HDNNP
from mlpot.models.mlp import MLP, ElementMLPs
from mlpot.models.pinn import PINN
from mlpot.models.potential import Potential

__all__ = ["HDNNP", "MLP", "ElementMLPs", "Potential", "PINN"]
