from mlpot.descriptors.acsf import ACSF, SymmetryFunction, au_study, build_acsf
from mlpot.descriptors.bessel import SphericalBessel
from mlpot.descriptors.chebyshev import Chebyshev
from mlpot.descriptors.concat import Concat
from mlpot.descriptors.cutoff import cutoff_function
from mlpot.descriptors.gaussian_legendre import GaussianLegendre
from mlpot.descriptors.scaling import FeatureScaler

__all__ = ["ACSF", "Chebyshev", "Concat", "GaussianLegendre", "SphericalBessel", "SymmetryFunction", "au_study", "build_acsf", "cutoff_function", "FeatureScaler"]
